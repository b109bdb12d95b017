"""The LLM's torch threads: the cores the hosts and the embedder leave free."""

from serving.cpu_threads import embedder_threads, llm_threads


def test_the_embedder_takes_a_core_for_every_eight():
    assert [embedder_threads(c) for c in (1, 2, 8, 16, 64)] == [1, 1, 1, 2, 8]


def test_the_llm_takes_the_cores_left_by_hosts_and_embedder_and_always_one():
    assert llm_threads(hosts=2, cores=16) == 12
    assert llm_threads(hosts=0, cores=16) == 14  # `simulacra serve`: no hosts beside it
    assert llm_threads(hosts=2, cores=2) == 1  # this machine: nothing left, still one
    assert llm_threads(hosts=40, cores=16) == 1
