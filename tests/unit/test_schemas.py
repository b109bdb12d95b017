import json
import re

import pytest

from actors.mind import schemas


@pytest.mark.parametrize("max_chars", [1, 40, 128, 129, 160, 240, 256, 400])
def test_text_accepts_exactly_its_lengths(max_chars: int) -> None:
    pattern = re.compile(schemas.text(max_chars)["pattern"])
    assert pattern.fullmatch("a" * max_chars)
    assert not pattern.fullmatch("a" * (max_chars + 1))
    assert not pattern.fullmatch("")
    assert not pattern.fullmatch('say "hi"')  # quotes are outside the class


@pytest.mark.parametrize("max_chars", [40, 128, 160, 200, 240, 400])
def test_every_text_bound_compiles_in_xgrammar(max_chars: int, tiny_model_dir) -> None:
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer))
    schema = schemas.obj(a=schemas.text(max_chars), b=schemas.hhmm_string())
    compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
