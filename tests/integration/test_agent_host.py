"""Agents hosted in a Ray actor behind the typed proxy, calling the services through Serve."""

from datetime import datetime, timedelta

import pytest
import ray

from actors.host import remote_host
from actors.host_protocol import Host
from actors.mind.events import Observation
from actors.mind.persona import Persona
from cluster.hosts import HostDiedError, RemoteHost
from tests.integration.conftest import Services

pytestmark = pytest.mark.integration

PERSONAS = [
    Persona("Ayesha Khan", 24, "curious", "studies literature", home="dorm", adapter="alice"),
    Persona("Wolfgang Schulz", 21, "hard-working", "studies chemistry", home="dorm", adapter="bob"),
]


async def test_a_ray_host_steps_its_agents_through_the_services(services: Services) -> None:
    host = RemoteHost(0, remote_host().remote(PERSONAS, seed=1))
    assert isinstance(host, Host)
    assert await host.ping() is True
    assert await host.names() == [p.name for p in PERSONAS]
    start = datetime(2023, 2, 13, 7, 0)
    seen = {p.name: 0 for p in PERSONAS}
    calls_made = 0
    before = len(await services.llm.batch_sizes())
    for i in range(4):
        now = start + timedelta(minutes=20 * i)
        reading = Observation(
            "agent", "Wolfgang Schulz", "Wolfgang Schulz is reading", "library", 2.0
        )
        obs = {"Ayesha Khan": [reading], "Wolfgang Schulz": []}
        result = await host.step(obs, now, i)
        calls_made += result.calls
        for name, acts in result.actions.items():
            seen[name] += len(acts)
    assert all(n > 0 for n in seen.values()) and calls_made > 0
    executed = (await services.llm.batch_sizes())[before:]
    assert max(executed) > 1  # the two agents' requests met in one batch

    state = await host.get_state()
    twin = RemoteHost(1, remote_host().remote(PERSONAS, seed=1))
    await twin.set_state(state)
    assert await twin.get_state() == state

    reply = await host.interview("Ayesha Khan", "Who did you see?", start)
    assert reply.agent == "Ayesha Khan" and isinstance(reply.answer, str)
    drained = await host.drain_rows()
    calls, traces = drained.llm_calls, drained.retrievals
    assert {r["agent"] for r in calls} == {p.name for p in PERSONAS}
    assert 0 in {r["step"] for r in calls} and {r["step"] for r in calls} <= {0, 1, 2, 3, None}
    mine = [r for r in traces if r["agent"] == "Ayesha Khan"]
    assert mine and {"score", "rank", "returned"} <= set(mine[0])

    memories = await host.export_memories()
    await twin.restore(state, memories, start)
    assert await twin.export_memories() == memories
    await host.close()
    await twin.close()
    host.kill()
    with pytest.raises(HostDiedError, match="host 0 died"):  # Ray's own error, recognised
        await host.ping()
    ray.kill(twin.actor)
