"""Each figure is a valid PNG, written atomically, for small, empty and large inputs."""

import math
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib.image
import pytest

from experiments.figures import experiment_figure, point_label, scaling_figure
from experiments.stats import SummaryRow, mean_interval, summarize
from measures.figures import awareness_figure, network_figure, panel_title, short_label

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = datetime(2023, 2, 13, 8, 0)


def _check_png(path: Path) -> tuple[int, int]:
    """Checks ``path`` is the folder's only file and a readable PNG; returns (height, width)."""
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    return image.shape[0], image.shape[1]


def test_awareness_figure(tmp_path: Path) -> None:
    curves = {
        "party": [(START + timedelta(hours=h), min(1.0, h / 10)) for h in range(12)],
        "election": [(START, 0.04), (START + timedelta(hours=5), 0.32)],
    }
    path = awareness_figure(curves, tmp_path / "awareness.png")
    assert path == tmp_path / "awareness.png"
    assert _check_png(path) == (450, 800)


@pytest.mark.parametrize(
    "curves", [{"party": [(START, 0.04)]}, {"party": []}, {}], ids=["one point", "empty", "none"]
)
def test_awareness_figure_with_little_data(tmp_path: Path, curves: dict) -> None:
    _check_png(awareness_figure(curves, tmp_path / "awareness.png", title="Party"))


def test_awareness_figure_replaces_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "awareness.png"
    path.write_bytes(b"old")
    _check_png(awareness_figure({"party": [(START, 0.5)]}, path))


def test_network_figure_has_a_panel_per_network(tmp_path: Path) -> None:
    agents = ["Isabella Rodriguez", "Klaus Mueller", "Maria Lopez", "Tom Moreno"]
    start = {("Isabella Rodriguez", "Klaus Mueller")}
    end = [*start, ("Klaus Mueller", "Isabella Rodriguez"), ("Maria Lopez", "Tom Moreno")]
    one = _check_png(network_figure(agents, {"end": end}, tmp_path / "one" / "n.png"))
    two = _check_png(
        network_figure(agents, {"start": start, "end": end}, tmp_path / "two" / "n.png")
    )
    assert two[0] == one[0] and two[1] == 2 * one[1]


@pytest.mark.parametrize("agents", [1, 2, 40, 150])
def test_network_figure_sizes(tmp_path: Path, agents: int) -> None:
    names = [f"Agent{i} Surname" for i in range(agents)]
    edges = [(names[i], names[(i * 7 + 1) % agents]) for i in range(agents)]
    _check_png(network_figure(names, {"start": [], "end": edges}, tmp_path / "network.png"))


def test_network_figure_refuses_unknown_agents_and_no_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Zed"):
        network_figure(["Ann Lee"], {"end": [("Ann Lee", "Zed Ray")]}, tmp_path / "n.png")
    with pytest.raises(ValueError, match="at least one network"):
        network_figure(["Ann Lee"], {}, tmp_path / "n.png")
    assert list(tmp_path.iterdir()) == []


def test_labels_and_titles() -> None:
    assert short_label("Klaus Mueller", 25) == "Klaus"
    assert short_label("Klaus Mueller", 31) == "KM"
    assert short_label("Klaus Mueller", 101) == ""
    assert panel_title("end", 4, [("a", "b"), ("b", "c"), ("c", "d")]) == (
        "end\n|E| = 3, density = 0.500"
    )
    assert panel_title("start", 1, []) == "start\n|E| = 0, density = n/a"


def _summary() -> list[SummaryRow]:
    rows = [
        {"point": p, "agents.w_relevance": w, "seed": s, "measure": m, "value": p + s * 0.5}
        for p, w in enumerate((1.0, 3.0))
        for s in range(3)
        for m in ("reach", "edges", "attendance", "density")
    ]
    return summarize(rows, ["agents.w_relevance"])


def test_experiment_figure(tmp_path: Path) -> None:
    summary = _summary()
    assert point_label(summary[0]) == "w_relevance=1"
    _check_png(experiment_figure(summary, tmp_path / "experiment.png"))


def test_experiment_figure_one_point_without_params(tmp_path: Path) -> None:
    row = SummaryRow(point=0, params=(), measure="reach", interval=mean_interval([0.5]))
    assert point_label(row) == "p0"
    _check_png(experiment_figure([row], tmp_path / "experiment.png"))
    with pytest.raises(ValueError, match="at least one row"):
        experiment_figure([], tmp_path / "other.png")


def test_scaling_figure_skips_missing_and_nan(tmp_path: Path) -> None:
    rows = [
        {
            "agents": 25,
            "wall_s_per_step": 2.0,
            "agent_steps_per_s": 12.5,
            "calls_per_s": 30.0,
            "tokens_per_s": 4000.0,
            "host_mb_per_agent": 40.0,
            "service_mb": 18000.0,
        },
        {
            "agents": 100,
            "wall_s_per_step": 5.0,
            "agent_steps_per_s": 20.0,
            "calls_per_s": math.nan,
            "host_mb_per_agent": 35.0,
        },
        {"agents": 1000, "wall_s_per_step": math.nan},
    ]
    _check_png(scaling_figure(rows, tmp_path / "scaling.png"))
    _check_png(scaling_figure([], tmp_path / "empty" / "scaling.png"))
