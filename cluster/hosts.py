"""Host references: the driver calls a host the same way whether it is a Ray actor or local.

``HostRef.call("step", ...)`` awaits ``actor.step.remote(...)`` for an actor and
``host.step(...)`` for an :class:`~actors.host.AgentHost` in this process (tests, sequential
runs). A host whose actor died raises :class:`HostDiedError`, which the driver answers by
restarting that host and rolling the run back to its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ACTOR_DEATH = (
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
)


class HostDiedError(Exception):
    """The process of a host is gone (its agents' state lives on in the last checkpoint)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"host {index} died: {type(cause).__name__}: {cause}")
        self.index = index


@dataclass
class HostRef:
    """One host: its index, the agents it carries, and the object or actor behind it."""

    index: int
    names: list[str]
    target: Any
    remote: bool

    async def call(self, method: str, *args: Any) -> Any:
        try:
            if self.remote:
                return await getattr(self.target, method).remote(*args)
            return await getattr(self.target, method)(*args)
        except Exception as exc:
            if any(cls.__name__ in ACTOR_DEATH for cls in type(exc).__mro__):
                raise HostDiedError(self.index, exc) from exc
            raise

    def kill(self) -> None:
        """Ends the host's process (fault-injection in tests and benchmarks)."""
        if self.remote:
            import ray

            ray.kill(self.target, no_restart=True)


HostFactory = Callable[[int, Sequence[dict[str, Any]]], HostRef]
"""Makes host ``index`` carrying these personas (``Persona.to_dict`` data)."""


def ray_host_factory(
    settings: dict[str, Any],
    seed: int,
    qdrant: str,
    sequential: bool = False,
    collection_prefix: str = "simulacra",
) -> HostFactory:
    """Hosts as Ray actors, each with the Serve clients and its own memory store.

    ``collection_prefix`` keeps one run's memories apart from another's on a Qdrant server.
    """

    def make(index: int, personas: Sequence[dict[str, Any]]) -> HostRef:
        from actors.host import remote_host

        actor = remote_host().remote(
            list(personas),
            settings,
            seed,
            qdrant=qdrant,
            sequential=sequential,
            collection_prefix=collection_prefix,
        )
        return HostRef(index, [p["name"] for p in personas], actor, remote=True)

    return make


def local_host_factory(
    settings: dict[str, Any],
    seed: int,
    llm: Any,
    embedder: Any,
    store_factory: Callable[[int], Any],
    sequential: bool = False,
) -> HostFactory:
    """Hosts in this process (tests; the sequential baseline), sharing ``llm`` and ``embedder``.

    ``store_factory(index)`` gives host ``index`` its memory store (the same one again for a
    restarted host, to stand in for a Qdrant that outlives the host).
    """

    def make(index: int, personas: Sequence[dict[str, Any]]) -> HostRef:
        from actors.host import AgentHost

        host = AgentHost(
            list(personas),
            settings,
            seed,
            llm=llm,
            embedder=embedder,
            store=store_factory(index),
            sequential=sequential,
        )
        return HostRef(index, [p["name"] for p in personas], host, remote=False)

    return make
