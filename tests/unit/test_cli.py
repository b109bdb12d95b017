from pathlib import Path

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


def test_run_with_a_bad_scenario_fails_before_anything_starts(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: 2024-03-04T07:00:00\nduraton_hours: 1\n")
    out = tmp_path / "run"
    assert main(["run", str(bad), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "duraton_hours" in err and "unknown key" in err
    assert "world" in err  # every problem at once, each with its path
    assert not out.exists()


def test_run_refuses_an_output_folder_that_holds_something(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    town = Path(__file__).parents[2] / "scenarios" / "town.yaml"
    assert main(["run", str(town), "--out", str(out), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_run_refuses_a_missing_replay_file(tmp_path, capsys) -> None:
    town = Path(__file__).parents[2] / "scenarios" / "town.yaml"
    missing = tmp_path / "nope.msgpack"
    args = ["--out", str(tmp_path / "r"), "--model", "tiny", "--replay", str(missing)]
    code = main(["run", str(town), *args])
    assert code == 2
    assert "nope.msgpack" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys) -> None:
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_the_manifest_never_holds_an_upstream_api_key() -> None:
    from cluster.run import RunOptions, public_options
    from serving.config import EngineConfig

    engine = EngineConfig(engine="openai", model="m", base_url="http://127.0.0.1:1", api_key="s3")
    options = RunOptions(engine=engine)
    assert "s3" not in str(public_options(options))
    assert options.engine.api_key == "s3"  # the running process still has it


def test_a_run_whose_agent_names_an_unserved_adapter_fails_first(tmp_path, capsys) -> None:
    from scenarios.loader import write_scenario
    from scenarios.synthetic import synthetic_town

    town = synthetic_town(2, seed=0, hours=0.05)
    agents = [town.agents[0].model_copy(update={"adapter": "hermione"}), town.agents[1]]
    path = tmp_path / "town.yaml"
    write_scenario(town.model_copy(update={"agents": agents}), path)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--model", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hermione" in err and agents[0].name in err and "alice" in err
    assert not out.exists()


def test_a_run_has_one_seed_and_its_engine_follows_it() -> None:
    from cluster.run import RunOptions
    from serving.config import EngineConfig

    assert RunOptions(seed=7).engine.seed == 7
    assert RunOptions(seed=7, engine=EngineConfig(model="tiny", seed=3)).engine.seed == 7
    data = {"seed": 5, "engine": {"model": "tiny", "seed": 1}}
    assert RunOptions.model_validate(data).engine.seed == 5  # a manifest's, read back


def test_every_command_maps_the_engine_flags_alike(capsys: pytest.CaptureFixture[str]) -> None:
    from serving.config import engine_fields

    flags = {"engine": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "seed": 2}
    assert engine_fields({**flags, "upstream_api_key": "k", "other": 1}) == {
        "engine": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:9",
        "api_key": "k",
        "seed": 2,
    }
    for argv in (
        ["character", "build", "p.md", "--generator", "m", "--engine", "openai", "--out", "o"],
        ["serve", "--engine", "openai"],
    ):
        assert main(argv) == 2
        assert "--engine openai needs --base-url" in capsys.readouterr().err


def test_measure_refuses_a_folder_that_is_not_a_run(tmp_path, capsys) -> None:
    assert main(["measure", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a run folder (no manifest.json)" in capsys.readouterr().err
    assert main(["measure", str(tmp_path), "--measures", "gossip"]) == 2
    assert "--measures 'gossip'" in capsys.readouterr().err


def test_view_refuses_a_folder_that_is_not_a_run_and_a_port_in_use(tmp_path, capsys) -> None:
    import socket

    assert main(["view", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a run folder (no manifest.json)" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "gone")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        town = str(Path(__file__).parents[2] / "scenarios" / "town.yaml")
        out = tmp_path / "run"
        assert main(["run", town, "--view", "--view-port", str(port), "--out", str(out)]) == 2
        assert f"--view-port {port}: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
        assert not out.exists()  # refused before anything started


def test_experiment_refuses_bad_options_and_files_before_anything(tmp_path, capsys) -> None:
    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\nsynthetic: {agents: 3}\nseeds: [0, 0]\nsteps: 2\n")
    assert main(["experiment", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert f"{spec}: seeds[1]: 0 is given twice" in capsys.readouterr().err
    assert main(["experiment", str(spec), "--concurrency", "0"]) == 2
    assert "--concurrency 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
