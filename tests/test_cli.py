import os
import subprocess
import sys

import pytest


def _run(*args, cwd=None, timeout=600):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "mtmm_keras.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_help_lists_commands_without_loading_tensorflow():
    result = _run("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, mtmm_keras.cli as c; c.build_parser(); print('tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True, text=True,
    )
    assert probe.stdout.split() == ["False", "False"]


def test_unknown_command_is_an_argparse_error():
    result = _run("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.slow
def test_demo_builds_fits_saves_and_reloads(tmp_path):
    result = _run("demo", "--out", str(tmp_path), "--epochs", "3", "--no-zoo")
    assert result.returncode == 0, result.stderr[-2000:]
    for kind in ("hard_sharing", "soft_sharing", "attention_fusion", "joint_embedding"):
        assert (tmp_path / f"{kind}.keras").stat().st_size > 0
        assert kind in result.stdout
    assert "all reloads match" in result.stdout
    assert "oneDNN" not in result.stderr and "cuInit" not in result.stderr  # TF C++ noise is silenced
