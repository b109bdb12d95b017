"""Ctrl-C in two stages (``cluster/interrupts.py``): the first stops after the step, the second
at once; the previous handler comes back; off the main thread nothing is installed."""

from __future__ import annotations

import signal
import threading

from cluster.interrupts import two_stage_sigint


def test_the_first_ctrl_c_stops_after_the_step_the_second_at_once(capsys) -> None:
    calls: list[str] = []
    state = {"stopping": False}

    def after_step() -> None:
        calls.append("after step")
        state["stopping"] = True

    before = signal.getsignal(signal.SIGINT)
    with two_stage_sigint(lambda: state["stopping"], after_step, lambda: calls.append("now"), "x"):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    assert calls == ["after step", "now"]
    assert "x (Ctrl-C again to stop now)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before


def test_off_the_main_thread_it_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def other() -> None:
        with two_stage_sigint(lambda: False, lambda: None, lambda: None, "x"):
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [before]
