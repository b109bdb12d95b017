"""Every number of the generative-agents spec, as typed settings (a scenario can set each one).

Two named presets: ``paper`` (the default) and ``reference`` (the original implementation's
defaults). Where they differ, ``../shared/spec/generative-agents.md`` lists both.
"""

from __future__ import annotations

from datetime import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Preset = Literal["paper", "reference"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrievalSettings(_Settings):
    """Section 2."""

    recency_decay: float = Field(0.995, gt=0, le=1)
    w_recency: float = 1.0
    w_importance: float = 1.0
    w_relevance: float = 1.0
    top_k: int = Field(30, ge=1)
    include_chats: bool = False
    relationship_k: int = Field(50, ge=1)
    dialogue_k: int = Field(15, ge=1)


class ImportanceSettings(_Settings):
    """Section 3."""

    idle: int = Field(1, ge=1, le=10)
    fallback: int = Field(4, ge=1, le=10)
    plan: int = Field(5, ge=1, le=10)


class ReflectionSettings(_Settings):
    """Section 4."""

    threshold: int = Field(150, ge=1)
    focal_source: Literal["recent", "since_last_reflection"] = "recent"
    focal_records: int = Field(100, ge=1)
    questions: int = Field(3, ge=1)
    insights_per_question: int = Field(5, ge=1)
    retrieval_k: int = Field(30, ge=1)
    expiry_days: float | None = 30.0
    post_chat: bool = True


class PlanningSettings(_Settings):
    """Section 5."""

    broad_strokes_min: int = Field(5, ge=1)
    broad_strokes_max: int = Field(8, ge=1)
    decompose_min_block_minutes: int = Field(60, ge=5)
    subtask_min_minutes: int = Field(5, ge=5)
    subtask_max_minutes: int = Field(15, ge=5)
    subtask_step_minutes: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> PlanningSettings:
        if self.broad_strokes_min > self.broad_strokes_max:
            raise ValueError("broad_strokes_min must be <= broad_strokes_max")
        if self.subtask_min_minutes > self.subtask_max_minutes:
            raise ValueError("subtask_min_minutes must be <= subtask_max_minutes")
        for name in ("subtask_min_minutes", "subtask_max_minutes"):
            if getattr(self, name) % self.subtask_step_minutes:
                raise ValueError(f"{name} must be a multiple of subtask_step_minutes")
        return self


class PerceptionSettings(_Settings):
    """Section 6."""

    vision_radius: int = Field(4, ge=0)
    attention_bandwidth: int = Field(3, ge=1)
    retention: int = Field(5, ge=1)


class DialogueSettings(_Settings):
    """Section 7."""

    max_utterances: int = Field(16, ge=1)
    cooldown_steps: int = Field(800, ge=0)
    no_talk_from: time = time(23, 0)
    chars_per_word: int = Field(8, ge=1)
    words_per_minute: int = Field(30, ge=1)
    context_lines: int = Field(4, ge=1)


class MindSettings(_Settings):
    """All of the mind's settings. ``preset`` fills what a scenario leaves unset."""

    preset: Preset = "paper"
    step_seconds: int = Field(10, ge=1)
    retrieval: RetrievalSettings = RetrievalSettings()
    importance: ImportanceSettings = ImportanceSettings()
    reflection: ReflectionSettings = ReflectionSettings()
    planning: PlanningSettings = PlanningSettings()
    perception: PerceptionSettings = PerceptionSettings()
    dialogue: DialogueSettings = DialogueSettings()

    @classmethod
    def from_preset(cls, preset: Preset = "paper", **overrides: Any) -> MindSettings:
        """The preset's settings, with ``overrides`` (nested dicts) on top."""
        return cls.model_validate(preset_data(preset, overrides))

    def overrides(self) -> dict[str, Any]:
        """What differs from the preset (and the step length): a scenario file's ``settings``."""
        base = MindSettings.from_preset(self.preset, step_seconds=self.step_seconds)
        ours = self.model_dump(mode="json", exclude={"preset", "step_seconds"})
        return _difference(ours, base.model_dump(mode="json"))


def preset_data(preset: Preset, overrides: dict[str, Any]) -> dict[str, Any]:
    """The data of a preset's settings with ``overrides`` (nested dicts) merged on top."""
    return _merge({"preset": preset, **PRESETS[preset]}, overrides)


def _difference(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in ours.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            inner = _difference(value, base[key])
            if inner:
                out[key] = inner
        elif base.get(key) != value:
            out[key] = value
    return out


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "reference": {
        "retrieval": {
            "recency_decay": 0.99,
            "w_recency": 0.5,
            "w_importance": 2.0,
            "w_relevance": 3.0,
        },
        "reflection": {"focal_source": "since_last_reflection"},
    },
}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
