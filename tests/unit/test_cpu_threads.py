"""The LLM's threads (the cores the hosts and the embedder leave idle) and the CPU's flags."""

from serving.cpu_flags import parse_cpuinfo
from serving.cpu_threads import embedder_threads, llm_threads

AVX2 = "model name\t: Some CPU\nflags\t\t: fpu sse avx avx2 fma\n"
AMX = (
    "model name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    "processor\t: 1\nflags\t\t: avx2\n"
)


def test_the_embedder_takes_a_core_for_every_eight():
    assert [embedder_threads(c) for c in (1, 2, 8, 16, 64)] == [1, 1, 1, 2, 8]


def test_the_llm_takes_the_cores_the_hosts_and_embedder_leave_idle():
    assert llm_threads(hosts=2, cores=2) == 2  # this machine, a packed run: 0.35 of a core used
    assert llm_threads(hosts=0, cores=16) == 16  # `simulacra serve`: nothing beside it
    assert llm_threads(hosts=25, cores=2) == 1  # one host per agent: always one
    assert llm_threads(hosts=40, cores=16) == 12
    assert llm_threads(hosts=8, cores=2) == 1


def test_cpu_flags_are_read_from_the_first_processor():
    amx = parse_cpuinfo(AMX)
    assert amx.model == "Intel(R) Xeon(R) Processor"
    assert amx.amx_bf16 and amx.avx512_bf16 and amx.bf16_matmul
    assert "amx_bf16" in amx.describe()
    plain = parse_cpuinfo(AVX2)
    assert plain.avx2 and not plain.avx512f and not plain.bf16_matmul
    assert not parse_cpuinfo("").avx2  # not Linux: nothing assumed
