"""Student-t quantiles and intervals, and the summary table of an experiment grid."""

import math

import pytest

from experiments.stats import (
    Interval,
    SummaryRow,
    format_summary,
    mean_interval,
    summarize,
    t_cdf,
    t_quantile,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (10**6, 1.960)],
)
def test_t_quantiles_match_the_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)


def test_t_cdf_is_symmetric_and_inverts_the_quantile() -> None:
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    assert t_cdf(1.5, 3) + t_cdf(-1.5, 3) == pytest.approx(1.0)
    assert t_cdf(t_quantile(0.995, 7), 7) == pytest.approx(0.995, abs=1e-10)
    assert t_quantile(0.5, 5) == 0.0
    with pytest.raises(ValueError, match="probability"):
        t_quantile(1.0, 5)


def test_interval_of_known_data() -> None:
    interval = mean_interval([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert interval.mean == 3.0 and interval.n == 5 and interval.spread
    assert interval.low == pytest.approx(3 - half, abs=1e-5)
    assert interval.high == pytest.approx(3 + half, abs=1e-5)
    assert mean_interval([1, 2, 3, 4, 5], confidence=0.9).high < interval.high


def test_one_value_has_no_spread() -> None:
    assert mean_interval([4.5]) == Interval(4.5, 4.5, 4.5, 1)
    assert not mean_interval([4.5]).spread


def test_nans_are_dropped_and_empty_is_refused() -> None:
    assert mean_interval([1.0, math.nan, 3.0]) == mean_interval([1.0, 3.0])
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([math.nan])
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=95)


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for point, weight in ((1, 3.0), (0, 1.0)):
        for seed in range(3):
            for measure in ("reach", "edges"):
                value = float(point * 10 + seed) if measure == "reach" else float(seed)
                row = {"point": point, "mind.w_relevance": weight, "seed": seed}
                rows.append({**row, "measure": measure, "value": value})
    rows.append({"point": 0, "mind.w_relevance": 1.0, "seed": 9, "measure": "lost", "value": None})
    return rows


def test_summarize_groups_by_point_and_measure_in_order() -> None:
    summary = summarize(_rows(), ["mind.w_relevance"])
    assert [(s.point, s.measure) for s in summary] == [
        (0, "reach"),
        (0, "edges"),
        (0, "lost"),
        (1, "reach"),
        (1, "edges"),
    ]
    assert summary[0].params == (("mind.w_relevance", 1.0),)
    assert summary[3].params == (("mind.w_relevance", 3.0),)
    assert summary[3].interval == mean_interval([10.0, 11.0, 12.0])
    lost = summary[2].interval
    assert lost.n == 0 and math.isnan(lost.mean)


def test_summarize_names_a_missing_column() -> None:
    with pytest.raises(ValueError, match="measure"):
        summarize([{"point": 0, "seed": 0, "value": 1.0}], [])


def test_format_summary_shows_params_and_numbers_aligned() -> None:
    summary = summarize(_rows(), ["mind.w_relevance"])
    lines = format_summary(summary).splitlines()
    assert len(lines) == 1 + len(summary)
    assert lines[0].split()[:5] == ["point", "params", "measure", "n", "mean"]
    assert "95% interval" in lines[0]
    reach = lines[4]
    assert "mind.w_relevance=3" in reach and "reach" in reach
    assert " 3 " in reach and "11" in reach
    half = t_quantile(0.975, 2) * 1 / math.sqrt(3)
    assert f"[{11 - half:.4g}, {11 + half:.4g}]" in reach
    assert lines[3].rstrip().endswith("nan  -")
    starts = {line.index(row.measure, 10) for line, row in zip(lines[1:], summary, strict=True)}
    assert starts == {lines[0].index("measure")}


def test_format_summary_without_params_or_spread() -> None:
    row = SummaryRow(point=0, params=(), measure="reach", interval=mean_interval([0.5]))
    line = format_summary([row]).splitlines()[1]
    assert line.split() == ["0", "-", "reach", "1", "0.5", "-"]
