"""The memory store on Qdrant: embedded (per-agent collections and a cache) or on a server
(one collection with a tenant index), behind one opener, :func:`open_qdrant_store`."""

from __future__ import annotations

from actors.qdrant.embedded import EmbeddedQdrantStore
from actors.qdrant.server import ServerQdrantStore

QdrantStore = EmbeddedQdrantStore | ServerQdrantStore


def open_qdrant_store(
    location: str = ":memory:",
    dim: int = 384,
    collection_prefix: str = "simulacra",
    api_key: str | None = None,
) -> QdrantStore:
    """A started store at ``location``: ``":memory:"`` or a folder (embedded, a folder persists),
    or an ``http(s)://`` URL (a Qdrant server; ``api_key`` if it needs one).

    ``collection_prefix`` keeps one run's memories apart from another's.
    """
    store: QdrantStore
    if location.startswith(("http://", "https://")):
        store = ServerQdrantStore(location, dim, collection_prefix, api_key)
    else:
        store = EmbeddedQdrantStore(location, dim, collection_prefix)
    store.start()
    return store


__all__ = ["EmbeddedQdrantStore", "QdrantStore", "ServerQdrantStore", "open_qdrant_store"]
