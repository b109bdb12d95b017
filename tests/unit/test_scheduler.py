"""Iteration-level scheduling: admission within rows and KV, prompt chunks within a budget."""

from dataclasses import dataclass

from serving.engines.scheduler import Scheduler, SchedulerLimits


@dataclass(eq=False)
class Row:
    kv_bytes: int
    prompt_left: int = 0
    feed_tokens: int = 1


def _scheduler(rows: int = 4, kv: int = 100, prefill: int = 10) -> Scheduler[Row]:
    return Scheduler(SchedulerLimits(max_rows=rows, kv_budget_bytes=kv, prefill_tokens=prefill))


def _cost(row: Row) -> int:
    return row.kv_bytes


def test_admission_is_first_come_within_rows_and_kv():
    s = _scheduler(rows=3, kv=100)
    rows = [Row(40), Row(40), Row(30), Row(10)]
    for r in rows:
        s.add(r)
    assert s.admit(_cost) == rows[:2]  # the third would exceed the KV budget: it waits
    assert list(s.waiting) == rows[2:]  # and so does the fourth, behind it (no overtaking)
    s.remove(rows[0])
    assert s.admit(_cost) == rows[2:4] and s.kv_bytes == 80


def test_a_lone_row_runs_even_above_the_budget():
    s = _scheduler(kv=10)
    big = Row(500)
    s.add(big)
    assert s.admit(_cost) == [big]


def test_the_plan_decodes_every_row_and_chunks_prompts_within_the_budget():
    s = _scheduler(rows=5, prefill=10)
    decoding = [Row(1), Row(1)]
    reading = [Row(1, prompt_left=7), Row(1, prompt_left=30), Row(1, prompt_left=5)]
    for r in [reading[0], decoding[0], reading[1], decoding[1], reading[2]]:
        s.add(r)
    s.admit(_cost)
    plan = s.plan()
    assert plan == [(decoding[0], 1), (decoding[1], 1), (reading[0], 7), (reading[1], 3)]


def test_a_decoding_row_feeds_the_tokens_its_grammar_forced_in_one_pass():
    s = _scheduler(prefill=4)
    jumping, plain, reading = Row(1, feed_tokens=6), Row(1), Row(1, prompt_left=9)
    for r in (jumping, plain, reading):
        s.add(r)
    s.admit(_cost)
    assert s.plan() == [(jumping, 6), (plain, 1), (reading, 4)]  # forced text: not prefill
