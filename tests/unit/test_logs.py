"""The verbosity setting: what this process and Ray's workers hide at NORMAL."""

import logging
import os
import warnings
from collections.abc import Iterator

import pytest

from cluster import logs
from cluster.logs import QUIET_ENV, SERVE_LOGGER, Verbosity, setup_logging


@pytest.fixture
def restored() -> Iterator[None]:
    """Puts back the environment, the root level, Serve's logger's filters, the warnings
    filters and the current verbosity."""
    saved = {key: os.environ.pop(key, None) for key in QUIET_ENV}
    root_level = logging.getLogger().level
    serve = logging.getLogger(SERVE_LOGGER)
    filters = list(serve.filters)
    current = logs.current()
    with warnings.catch_warnings():
        yield
    logging.getLogger().setLevel(root_level)
    serve.filters[:] = filters
    logs._current = current
    for key, value in saved.items():
        os.environ.pop(key, None)
        if value is not None:
            os.environ[key] = value


def _record(level: int) -> logging.LogRecord:
    return logging.LogRecord(SERVE_LOGGER, level, __file__, 1, "Started Serve", None, None)


def test_the_flag_maps_to_the_setting() -> None:
    assert Verbosity.from_flag(False) is Verbosity.NORMAL
    assert Verbosity.from_flag(True) is Verbosity.VERBOSE
    assert Verbosity.NORMAL.log_level == logging.WARNING
    assert Verbosity.VERBOSE.log_level == logging.INFO


def test_normal_hides_serve_info_deprecations_and_progress_bars(restored) -> None:
    setup_logging(Verbosity.NORMAL)
    assert logs.current() is Verbosity.NORMAL
    assert logging.getLogger().level == logging.WARNING
    serve = logging.getLogger(SERVE_LOGGER)
    assert not serve.filter(_record(logging.INFO))
    assert serve.filter(_record(logging.WARNING)) and serve.filter(_record(logging.ERROR))
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("old", DeprecationWarning, stacklevel=1)
        warnings.warn("soon", FutureWarning, stacklevel=1)
        warnings.warn("this matters", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["this matters"]
    setup_logging(Verbosity.NORMAL)  # twice: still one filter
    assert sum(isinstance(f, logs._BelowWarning) for f in serve.filters) == 1


def test_verbose_hides_nothing(restored) -> None:
    setup_logging(Verbosity.VERBOSE)
    assert logs.current() is Verbosity.VERBOSE
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger(SERVE_LOGGER).filter(_record(logging.INFO))
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_a_users_own_setting_is_kept(restored, monkeypatch) -> None:
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    setup_logging(Verbosity.NORMAL)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"


def test_in_a_worker_serve_replicas_keep_their_own_info_lines(monkeypatch) -> None:
    worker = logs._BelowWarning(in_worker=True)
    monkeypatch.setattr(logs, "_in_serve_replica", lambda: True)
    assert worker.filter(_record(logging.INFO))
    monkeypatch.setattr(logs, "_in_serve_replica", lambda: False)  # a host, the controller
    assert not worker.filter(_record(logging.INFO))
    assert worker.filter(_record(logging.WARNING))
