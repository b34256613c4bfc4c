"""scripts/install_system_deps.sh: exit 0 when the Debian data packages are (or get) installed, exit 1
naming the packages and the command when they are missing and cannot be installed.

The script runs with a PATH of stubs only: `dpkg-query` answers from a file of installed packages,
`id -u` from $FAKE_UID, `apt-get` succeeds (and installs) unless $FAKE_APT_FAILS; no sudo.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install_system_deps.sh"
PACKAGES = ["dataset-fashion-mnist", "espeak-ng"]
COMMAND = "sudo apt-get update && sudo apt-get install -y --no-install-recommends"

STUBS = {
    "dpkg-query": """#!{bash}
pkg="${{@: -1}}"
if grep -qx "$pkg" "$FAKE_INSTALLED"; then printf 'install ok installed'; else exit 1; fi
""",
    "id": """#!{bash}
echo "$FAKE_UID"
""",
    "apt-get": """#!{bash}
echo "apt-get $*" >> "$FAKE_APT_LOG"
[ -n "${{FAKE_APT_FAILS:-}}" ] && exit 100
if [ "$1" = install ]; then
    for arg in "$@"; do case "$arg" in -*|install) ;; *) [ -z "${{FAKE_APT_INSTALLS_NOTHING:-}}" ] && echo "$arg" >> "$FAKE_INSTALLED";; esac; done
fi
exit 0
""",
}


def _run(tmp_path, installed=(), uid=0, apt=True, apt_fails=False, installs_nothing=False, skip=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    bash = shutil.which("bash")
    for name in ("grep", "cat"):
        os.symlink(shutil.which(name), bin_dir / name)
    for name, text in STUBS.items():
        if name == "apt-get" and not apt:
            continue
        (bin_dir / name).write_text(text.format(bash=bash))
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "installed"
    state.write_text("".join(f"{pkg}\n" for pkg in installed))
    env = {"PATH": str(bin_dir), "FAKE_INSTALLED": str(state), "FAKE_UID": str(uid),
           "FAKE_APT_LOG": str(tmp_path / "apt.log")}
    if apt_fails:
        env["FAKE_APT_FAILS"] = "1"
    if installs_nothing:
        env["FAKE_APT_INSTALLS_NOTHING"] = "1"
    if skip is not None:
        env["MTMM_SKIP_SYSTEM_DEPS"] = skip
    proc = subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    apt_log = (tmp_path / "apt.log").read_text() if (tmp_path / "apt.log").exists() else ""
    return proc, apt_log


def test_already_installed_succeeds_without_apt(tmp_path):
    proc, apt_log = _run(tmp_path, installed=PACKAGES, uid=1000, apt=False)
    assert proc.returncode == 0, proc.stderr
    assert "already installed: dataset-fashion-mnist espeak-ng" in proc.stdout
    assert apt_log == ""


def test_root_installs_what_is_missing(tmp_path):
    proc, apt_log = _run(tmp_path, installed=["espeak-ng"], uid=0)
    assert proc.returncode == 0, proc.stderr
    assert "installing dataset-fashion-mnist" in proc.stdout and "done" in proc.stdout
    assert "apt-get install -y -qq --no-install-recommends dataset-fashion-mnist\n" in apt_log
    assert (tmp_path / "installed").read_text().split() == ["espeak-ng", "dataset-fashion-mnist"]


@pytest.mark.parametrize("case, why", [
    ("no_apt", "apt-get not found"),
    ("not_root", "not root (and no password-less sudo)"),
    ("apt_fails", "apt-get failed"),
    ("apt_installs_nothing", "apt-get succeeded but dpkg still does not list them as installed"),
])
def test_missing_and_not_installable_fails_naming_packages_and_command(tmp_path, case, why):
    proc, _ = _run(tmp_path, installed=["espeak-ng"] if case == "not_root" else (),
                   uid=1000 if case == "not_root" else 0, apt=case != "no_apt", apt_fails=case == "apt_fails",
                   installs_nothing=case == "apt_installs_nothing")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    missing = "dataset-fashion-mnist" if case == "not_root" else "dataset-fashion-mnist espeak-ng"
    assert f"ERROR: {why}" in proc.stderr
    assert f"the Debian packages {missing} are not installed" in proc.stderr
    assert f"  {COMMAND} {missing}\n" in proc.stderr  # the command to run, with only what is missing
    assert "MTMM_SKIP_SYSTEM_DEPS=1" in proc.stderr


def test_the_opt_out_turns_the_failure_into_a_warning(tmp_path):
    proc, _ = _run(tmp_path, uid=1000, skip="1")
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: not root" in proc.stderr and "going on without them" in proc.stderr
