import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from string import Template

import msgpack
import pytest
from pydantic import ValidationError

from actors.mind.persona import Persona
from actors.mind.prompting import Asker, PromptTemplate, Question, load_prompt
from actors.mind.records import MemoryRecord, expiry, is_idle
from actors.mind.settings import MindSettings
from serving.scripted import ScriptedLLM
from tests.fakes import new_id

MIND = Path(__file__).resolve().parents[2] / "actors" / "mind"


def test_the_mind_imports_no_ray_qdrant_or_vllm() -> None:
    modules = sorted(p.stem for p in MIND.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import actors.mind.{m}\n" for m in modules)
        + "bad = [m for m in ('ray', 'qdrant_client', 'vllm') if m in sys.modules]\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) >= 8
    assert out.stdout.strip() == ""


def test_record_round_trips_and_checks() -> None:
    t = datetime(2023, 2, 13, 9, 30)
    chat = MemoryRecord(
        "isabella",
        "chat",
        "Isabella and Klaus talked",
        t,
        6,
        transcript=(("Isabella", "Hi"),),
        id=new_id(),
    )
    assert chat.last_accessed == t
    back = MemoryRecord.from_dict(msgpack.unpackb(msgpack.packb(chat.to_dict())))
    assert back == chat
    with pytest.raises(ValueError, match="importance"):
        MemoryRecord("a", "observation", "x", t, 11, id=new_id())
    with pytest.raises(ValueError, match="transcript"):
        MemoryRecord("a", "observation", "x", t, 3, transcript=(), id=new_id())
    assert expiry("reflection", t, 30) == t + timedelta(days=30)
    assert expiry("observation", t, 30) is None
    assert is_idle("the desk is idle") and not is_idle("Klaus is reading")


def test_presets_and_overrides() -> None:
    paper = MindSettings()
    reference = MindSettings.from_preset("reference", reflection={"threshold": 250})
    assert (paper.retrieval.recency_decay, paper.retrieval.w_relevance) == (0.995, 1.0)
    assert (reference.retrieval.w_recency, reference.retrieval.w_importance) == (0.5, 2.0)
    assert reference.retrieval.w_relevance == 3.0 and reference.reflection.threshold == 250
    with pytest.raises(ValidationError, match="thresold"):
        MindSettings.from_preset("paper", reflection={"thresold": 3})


def test_every_prompt_file_loads() -> None:
    for path in (MIND / "prompts").glob("*.txt"):
        assert load_prompt(path.stem).fields, path


async def test_asker_retries_once_then_gives_up_and_counts() -> None:
    template = PromptTemplate("rate", Template("You rate."), Template("Rate: $what"))
    answers = iter(['{"x": 99}', '{"x": 2}', "nope", "nope"])
    llm = ScriptedLLM(lambda request: next(answers))
    asker = Asker(llm, "a", seed=1)
    schema = {
        "type": "object",
        "properties": {"x": {"type": "integer", "maximum": 5}},
        "required": ["x"],
    }
    q = Question(template, {"what": "the party"}, schema, "importance")
    assert await asker.ask_one(q) == {"x": 2}
    assert await asker.ask_one(q) is None
    assert asker.stats.retries["importance"] == 2 and asker.stats.failures["importance"] == 1
    seeds = [r.seed for r in llm.calls] if hasattr(llm.calls[0], "seed") else []
    assert len(set(seeds)) == 4  # a retry is asked with another seed
    assert (
        llm.calls[0].messages is not None and llm.calls[0].messages[1].content == "Rate: the party"
    )
    with pytest.raises(KeyError, match="missing fields"):
        template.render()
    state = asker.get_state()
    other = Asker(llm, "a", seed=1)
    other.set_state(state)
    assert other.get_state() == state and other.counter == 4


def test_persona_round_trip() -> None:
    p = Persona("Klaus Mueller", 20, "kind, curious", "studies late", known_places=("library",))
    assert Persona.from_dict(p.to_dict()) == p
    assert "Klaus Mueller (age: 20)" in p.summary()
