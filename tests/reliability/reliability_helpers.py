"""Helpers for the reliability suite (import with `from reliability_helpers import ...`): every case checks
the error, its message and that no user file changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path



def tree_listing(folder: str | os.PathLike, skip: str | None = None) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (symlinks by target name), except the subtree `skip`."""
    folder = Path(folder)
    listing = {}
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        if skip is not None:
            dirs[:] = [d for d in dirs if str(rel_root / d) != skip]
        for name in files:
            path = Path(root) / name
            rel = str(rel_root / name)
            if path.is_symlink():
                listing[rel] = "link->" + os.readlink(path)
            else:
                listing[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        for name in dirs:
            listing[str(rel_root / name) + "/"] = "dir"
    return listing


def run_cli(*args: str, cwd=None, timeout: int = 600, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `mtmm` command in a fresh process, as a user would."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "mtmm_keras.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def run_python(code: str, cwd=None, timeout: int = 600, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (nothing imported beforehand)."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_clean_cli_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A CLI failure is one readable line on stderr naming the problem (no traceback), with a non-zero exit."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])
