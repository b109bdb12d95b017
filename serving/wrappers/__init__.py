"""Wrappers around an LLM with the same interface: retries, a guard against a failing backend,
recording and replay, accounting, one call at a time (serial)."""

from serving.wrappers.accounting import AccountingLLM
from serving.wrappers.backend_guard import BackendGuardLLM, BackendUnavailableError
from serving.wrappers.recording import RecordingLLM, ReplayLLM, ReplayMissError, load_recording
from serving.wrappers.retry import RetryLLM
from serving.wrappers.serial import SerialLLM

__all__ = [
    "AccountingLLM",
    "BackendGuardLLM",
    "BackendUnavailableError",
    "RecordingLLM",
    "ReplayLLM",
    "ReplayMissError",
    "RetryLLM",
    "SerialLLM",
    "load_recording",
]
