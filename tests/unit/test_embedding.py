import numpy as np

from serving.embedding import EMBEDDING_DIM, MiniLMEmbedder


async def test_minilm_embeds_unit_vectors_and_means_something() -> None:
    embedder = MiniLMEmbedder()
    texts = [
        "Isabella is planning a Valentine's Day party at the cafe",
        "There will be a party at Hobbs Cafe on February 14",
        "The printer in the library is out of toner",
    ]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert (await embedder.embed([])).shape == (0, EMBEDDING_DIM)


async def test_concurrent_embeddings_are_batched_and_equal_the_unbatched() -> None:
    import asyncio

    embedder = MiniLMEmbedder(max_batch_size=16)
    texts = [f"observation {i}: someone walks by" for i in range(20)]
    parts = await asyncio.gather(*[embedder.embed([t]) for t in texts])
    assert max(embedder.batch_sizes) > 1
    np.testing.assert_allclose(np.concatenate(parts), embedder.embed_sync(texts), atol=1e-5)
