"""benchmarks/distributed.py: its arithmetic, its argument checks, and one tiny real run of two engines."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a repo folder, not installed
from benchmarks import distributed  # noqa: E402


def test_relative_difference_is_largest_gap_over_largest_magnitude():
    assert distributed.relative_difference([1.0, -4.0], [1.5, -4.0]) == pytest.approx(0.5 / 4.0)
    assert distributed.relative_difference([0.0], [0.0]) == 0.0


def test_compare_reports_ratio_and_worst_differences():
    one = {"samples_per_s": 100.0, "losses": [[2.0], [1.0]], "weights": [[1.0, 2.0], [4.0]]}
    two = {"samples_per_s": 50.0, "losses": [[2.0], [1.1]], "weights": [[1.0, 2.2], [4.0]]}
    got = distributed.compare(one, two)
    assert got["speedup"] == pytest.approx(0.5)
    assert got["loss_rel_diff"] == pytest.approx(0.1)
    assert got["weight_rel_diff"] == pytest.approx(0.1)


@pytest.mark.parametrize("args,message", [
    (["--engines", "mirrored,gpu"], "valid: mirrored, jax, multi_worker, resume"),
    (["--out", "x.csv"], "--out must end with .json"),
    (["--epochs", "2", "--kill-after", "2"], "--kill-after must be between 1 and"),
])
def test_bad_arguments_are_one_clean_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.distributed", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_tiny_run_writes_json_and_table_with_exact_engines(tmp_path):
    out = tmp_path / "dist.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.distributed", "--engines", "jax,resume", "--cases", "hard_sharing",
         "--rows", "256", "--batch", "64", "--epochs", "3", "--width", "8", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    jax_row = report["engines"]["jax"]["hard_sharing"]
    assert jax_row["samples_per_s_one"] > 0 and jax_row["samples_per_s_two"] > 0
    assert jax_row["loss_rel_diff"] < 1e-5 and jax_row["weight_rel_diff"] < 1e-5
    resume = report["engines"]["resume"]
    assert resume["weight_rel_diff"] < 1e-6  # relaunched after SIGKILL = uninterrupted
    assert resume["killed_wall_s"] > 0 and resume["resumed_wall_s"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| jax | hard_sharing |" in table and "Resume after SIGKILL" in table
    assert np.isfinite(report["machine"]["cpus"])
