"""Wrappers around an LLM with the same interface: retries, recording and replay, accounting."""

from serving.wrappers.accounting import AccountingLLM
from serving.wrappers.recording import RecordingLLM, ReplayLLM, ReplayMissError, load_recording
from serving.wrappers.retry import RetryLLM

__all__ = [
    "AccountingLLM",
    "RecordingLLM",
    "ReplayLLM",
    "ReplayMissError",
    "RetryLLM",
    "load_recording",
]
