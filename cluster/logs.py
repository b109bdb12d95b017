"""How much a command prints: one setting, :class:`Verbosity`, for this process and the Ray
processes it starts.

``NORMAL`` (the default) prints a run's progress, its result, and the warnings and errors that
matter (a host that died, a run that failed, anything logged at WARNING or above); it hides
Ray's and Serve's INFO lines, weight-loading progress bars, third-party deprecation warnings and
Ray's notes about retried tasks. ``VERBOSE`` (``simulacra -v``) shows all of them.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from enum import StrEnum

SERVE_LOGGER = "ray.serve"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Set in this process and in every Ray worker of a NORMAL run (a variable the user set wins).
QUIET_ENV: Mapping[str, str] = {
    "TRANSFORMERS_VERBOSITY": "error",  # transformers' own warnings (one per decode batch)
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Loading weights: 100%|...|" in every replica
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",  # pydantic, peft, ...
    # vLLM's start-up INFO and its CPU notes (no Triton, no libiomp in LD_PRELOAD, a raw
    # prompt's deprecation), from the LLM replica and its engine processes
    "VLLM_LOGGING_LEVEL": "ERROR",
}
# The Ray worker process setup hook of a NORMAL run (``ray.init(runtime_env=...)``).
WORKER_SETUP_HOOK = "cluster.logs.quiet_worker"


class Verbosity(StrEnum):
    NORMAL = "normal"
    VERBOSE = "verbose"

    @classmethod
    def from_flag(cls, verbose: bool) -> Verbosity:
        return cls.VERBOSE if verbose else cls.NORMAL

    @property
    def log_level(self) -> int:
        """The level of this process's loggers (and of Ray's ``ray`` logger in the driver)."""
        return logging.INFO if self is Verbosity.VERBOSE else logging.WARNING


_current = Verbosity.NORMAL


def current() -> Verbosity:
    """The verbosity :func:`setup_logging` set (``NORMAL`` until it is called)."""
    return _current


def worker_env(verbosity: Verbosity) -> dict[str, str]:
    """The environment variables a Ray worker of a run at ``verbosity`` gets."""
    if verbosity is Verbosity.VERBOSE:
        return {}
    return {k: os.environ.get(k, v) for k, v in QUIET_ENV.items()}


class _BelowWarning(logging.Filter):
    """Drops INFO and DEBUG records of Serve's logger; in a Ray worker (``in_worker``), not in
    a Serve replica, whose ``LoggingConfig`` decides (quiet for a run's services, a line per
    request for ``simulacra serve``)."""

    def __init__(self, in_worker: bool) -> None:
        super().__init__()
        self.in_worker = in_worker

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return self.in_worker and _in_serve_replica()


def _in_serve_replica() -> bool:
    try:
        import ray

        name = ray.get_runtime_context().get_actor_name()
    except Exception:
        return False
    return name is not None and name.startswith("SERVE_REPLICA")


def _quiet_serve_logger(in_worker: bool) -> None:
    # A logger's filters survive Serve's reconfiguring it (which replaces its level and handlers)
    logger = logging.getLogger(SERVE_LOGGER)
    if not any(isinstance(f, _BelowWarning) for f in logger.filters):
        logger.addFilter(_BelowWarning(in_worker))


def _quiet_warnings() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def setup_logging(verbosity: Verbosity) -> None:
    """Configures this process's logging and warnings for ``verbosity`` and remembers it for
    :func:`cluster.ray_runtime.init_ray`. At ``NORMAL`` it also sets :data:`QUIET_ENV` (where
    unset) before transformers is imported, so this process and a local Ray cluster started
    from it inherit it."""
    global _current
    _current = verbosity
    logging.basicConfig(level=verbosity.log_level, format=LOG_FORMAT)
    logging.getLogger().setLevel(verbosity.log_level)
    serve = logging.getLogger(SERVE_LOGGER)
    for f in [f for f in serve.filters if isinstance(f, _BelowWarning)]:
        serve.removeFilter(f)
    if verbosity is Verbosity.NORMAL:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        _quiet_warnings()
        _quiet_serve_logger(in_worker=False)


def quiet_worker() -> None:
    """The setup hook of every Ray worker of a ``NORMAL`` run (:data:`WORKER_SETUP_HOOK`):
    Serve's INFO lines outside its replicas (a host's "Started <...LongPollClient>", the
    controller's and the proxy's) and deprecation warnings are dropped; warnings and errors
    still reach the driver."""
    _quiet_warnings()
    _quiet_serve_logger(in_worker=True)
