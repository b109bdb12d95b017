"""The typed proxy of a host actor: one remote call per method; Ray's death errors recognised."""

from datetime import datetime
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnschedulableError

from actors.host_protocol import Host
from cluster.hosts import HostDiedError, RemoteHost


class _Method:
    def __init__(self, actor: "_FakeActor", name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self, *args: Any) -> Any:
        self.actor.sent.append((self.name, args))

        async def answer() -> Any:
            if self.actor.error is not None:
                raise self.actor.error
            return f"{self.name} answered"

        return answer()


class _FakeActor:
    """Stands in for a Ray actor handle: ``handle.method.remote(...)`` is awaitable."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.error = error

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


async def test_each_method_is_one_remote_call_of_that_name() -> None:
    actor = _FakeActor()
    host = RemoteHost(3, actor)
    assert isinstance(host, Host)
    now = datetime(2023, 2, 13, 9, 0)
    assert await host.interview("Klaus Mueller", "Who are you?", now) == "interview answered"
    assert await host.converse("A", "B", now, 4) == "converse answered"
    assert actor.sent == [
        ("interview", ("Klaus Mueller", "Who are you?", now)),
        ("converse", ("A", "B", now, 4)),
    ]


@pytest.mark.parametrize(
    "error", [ActorDiedError(), ActorUnschedulableError("no node has the resources")]
)
async def test_a_dead_actor_is_a_host_death_naming_the_host(error: BaseException) -> None:
    host = RemoteHost(2, _FakeActor(error))
    with pytest.raises(HostDiedError, match="host 2 died") as info:
        await host.ping()
    assert info.value.index == 2 and info.value.__cause__ is error


async def test_any_other_error_of_the_host_is_its_own() -> None:
    host = RemoteHost(0, _FakeActor(KeyError("no agent 'Nobody' here")))
    with pytest.raises(KeyError, match="Nobody"):
        await host.step({"Nobody": []}, datetime(2023, 2, 13), 0)


@pytest.mark.parametrize("as_cause", [False, True], ids=["task-error", "as-instance-of-cause"])
async def test_a_failing_backend_is_the_hosts_error_unwrapped_not_a_death(as_cause: bool) -> None:
    from ray.exceptions import RayTaskError

    from serving.wrappers import BackendUnavailableError

    cause = BackendUnavailableError("the LLM service", "HTTP 500 from the server: dead", 120.0)
    error = RayTaskError("step", "Traceback ...", cause)
    host = RemoteHost(1, _FakeActor(error.as_instanceof_cause() if as_cause else error))
    with pytest.raises(BackendUnavailableError) as info:
        await host.step({"A": []}, datetime(2023, 2, 13), 0)
    assert info.value is cause and info.value.last_error == "HTTP 500 from the server: dead"
