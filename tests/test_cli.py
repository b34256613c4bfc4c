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
