import os
import subprocess
import sys


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


# `mtmm demo` (every builder built, fitted, saved and reloaded) runs once in `make test`: from the installed wheel,
# tests/installed/check_installed.py::test_demo_builds_fits_saves_and_reloads_every_builder.


def test_commands_freeze_the_backend_import_out_of_the_garbage_collectors_reach():
    """After the backend import, the commands that load it freeze its objects (gc.freeze): full collections, such
    as the two the TFLite converter forces per flavour, then skip them (`mtmm export zoo:movies_mmoe`: 9.1 s ->
    7.6 s on 2 cores)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import gc, mtmm_keras.cli as c; c._quiet_backend(); print(gc.get_freeze_count())"],
        capture_output=True, text=True, timeout=600,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert int(probe.stdout.split()[-1]) > 100_000  # TensorFlow and Keras alone make about half a million
