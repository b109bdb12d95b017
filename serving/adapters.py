"""Adapter names and the checks on them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from serving.types import InvalidAdapterNameError, LLMRequest, UnknownAdapterError

BASE_MODEL_ALIASES = ("base", "__base__")
ADAPTER_CONFIG_FILE = "adapter_config.json"  # a peft LoRA adapter folder's config
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"  # and its weights (never a pickle)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_adapter_name(name: str) -> str:
    """Returns ``name`` if it is a safe adapter name, else raises.

    A name is a plain identifier: letters, digits, ``_``, ``-`` and ``.``, no path separator and
    no ``..``, so that it can never be read as a path.
    """
    if "/" in name or "\\" in name or ".." in name or not _NAME.match(name):
        raise InvalidAdapterNameError(
            f"invalid adapter name {name!r}: use letters, digits, '_', '-' or '.', "
            "with no path separator and no '..'",
            param="adapter",
        )
    if name in BASE_MODEL_ALIASES:
        raise InvalidAdapterNameError(
            f"adapter name {name!r} is reserved for the base model", param="adapter"
        )
    return name


def check_request_adapter(request: LLMRequest, available: Iterable[str]) -> None:
    """Raises unless the request's adapter is the base model or one of ``available``."""
    if request.adapter is None:
        return
    names = tuple(available)
    if request.adapter not in names:
        if "/" in request.adapter or "\\" in request.adapter or ".." in request.adapter:
            check_adapter_name(request.adapter)
        raise UnknownAdapterError(request.adapter, names, request_id=request.request_id)


def parse_adapter_spec(spec: str) -> tuple[str, str]:
    """Parses ``NAME=PATH`` from the command line."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--adapter {spec!r}: expected NAME=PATH")
    return check_adapter_name(name), path
