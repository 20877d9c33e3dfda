"""The examples that run in seconds run here (the others need ../shared data or minutes)."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plot_calibration_draws_its_figure(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    out = tmp_path / "calibration.png"
    monkeypatch.setattr("sys.argv", ["plot_calibration.py", str(out)])
    runpy.run_path(str(EXAMPLES / "plot_calibration.py"), run_name="__main__")
    assert out.stat().st_size > 10_000


def test_plot_streaming_draws_its_figure_and_its_story_holds(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "streaming.png"
    module = runpy.run_path(str(EXAMPLES / "plot_streaming.py"))
    scores = module["main"]([str(out), "--calls", "10"])
    assert out.stat().st_size > 10_000
    # the story the docstring tells: a stream with a memory of rows ends where one fit
    # ends; memory-free streaming ends below it but above the population model
    assert abs(scores["stream_memory=20000"] - scores["one fit"]) < 0.01
    assert scores["population"] < scores["stream_memory=0"] < scores["one fit"]
    # and its calibration: with memory the stream's log-loss ends at one fit's;
    # memory-free above it, far below chance (0.693)
    assert abs(scores["log-loss, stream_memory=20000"] - scores["log-loss, one fit"]) < 0.01
    assert scores["log-loss, one fit"] < scores["log-loss, stream_memory=0"] < 0.6
