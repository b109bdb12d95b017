"""Agents hosted in a Ray actor, calling the LLM and embedding services through Serve."""

from datetime import datetime, timedelta

import pytest
import ray

from actors.host import remote_host
from actors.mind.persona import Persona
from tests.integration.conftest import Services

pytestmark = pytest.mark.integration

PERSONAS = [
    Persona("Ayesha Khan", 24, "curious", "studies literature", home="dorm", adapter="alice"),
    Persona("Wolfgang Schulz", 21, "hard-working", "studies chemistry", home="dorm", adapter="bob"),
]


async def test_a_ray_host_steps_its_agents_through_the_services(services: Services) -> None:
    host = remote_host().remote([p.to_dict() for p in PERSONAS], seed=1)
    start = datetime(2023, 2, 13, 7, 0)
    seen = {p.name: 0 for p in PERSONAS}
    before = len(await services.llm.batch_sizes())
    for i in range(4):
        now = start + timedelta(minutes=20 * i)
        obs = {
            "Ayesha Khan": [
                {
                    "kind": "agent",
                    "subject": "Wolfgang Schulz",
                    "description": "Wolfgang Schulz is reading",
                    "location": "library",
                    "distance": 2.0,
                }
            ]
        }
        actions = await host.step.remote(obs, now.isoformat())
        for name, acts in actions.items():
            seen[name] += len(acts)
    assert all(n > 0 for n in seen.values())
    executed = (await services.llm.batch_sizes())[before:]
    assert max(executed) > 1  # the two agents' requests met in one batch

    state = await host.get_state.remote()
    twin = remote_host().remote([p.to_dict() for p in PERSONAS], seed=1)
    await twin.set_state.remote(state)
    assert await twin.get_state.remote() == state

    reply = await host.interview.remote("Ayesha Khan", "Who did you see?", start.isoformat())
    assert reply["agent"] == "Ayesha Khan" and isinstance(reply["answer"], str)
    traces = await host.drain_traces.remote()
    assert traces["Ayesha Khan"] and {"score", "rank", "returned"} <= set(traces["Ayesha Khan"][0])
    ray.kill(host)
    ray.kill(twin)
