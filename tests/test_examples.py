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
