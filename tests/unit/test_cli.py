import pytest

from cluster.cli import main


def test_serve_with_a_missing_model_folder_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "./no/such/model"]) == 2
    assert "./no/such/model" in capsys.readouterr().err


def test_serve_with_a_bad_adapter_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--adapter", "../x=/tmp/x"]) == 2
    assert "invalid adapter name '../x'" in capsys.readouterr().err
    assert main(["serve", "--adapter", "alice"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_serve_with_a_missing_adapter_folder_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["serve", "--adapter", f"alice={missing}"]) == 2
    err = capsys.readouterr().err
    assert "alice" in err and str(missing) in err


def test_openai_engine_needs_a_base_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--engine", "openai", "--model", "m"]) == 2
    assert "--base-url" in capsys.readouterr().err
