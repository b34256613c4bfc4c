"""The package as a user installs it: the wheel and the sdist are built from this tree, the wheel is installed
(non-editable) into a fresh virtualenv, and tests/installed/check_installed.py runs there from a folder outside
the source tree. The editable install the rest of the suite uses would hide a module the wheel leaves out.

The fresh virtualenv takes mtmm-keras only from the wheel. Its third-party dependencies (TensorFlow & co.) are
not downloaded again: a `.pth` file points at this environment's site-packages, which holds no `mtmm_keras`
folder (the editable install is an import hook that only runs from its own site directory), and a test checks
that every requirement the wheel declares for `[export,data]` is met by what the venv sees.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "installed" / "check_installed.py"
pytestmark = pytest.mark.slow


def _run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{argv}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel built from that sdist, wheel built straight from the tree), as `python -m build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    # A copy of the tree without build outputs: setuptools' build/ folder keeps modules deleted since, and a
    # wheel built from it would carry them (and two builds in one folder would race).
    tree = out / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info",
                                                              "__pycache__", ".pytest_cache"))
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out / "from_sdist"), str(tree)])
    _run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out / "from_tree"), str(tree)])
    sdist = next((out / "from_sdist").glob("mtmm_keras-*.tar.gz"))
    return sdist, next((out / "from_sdist").glob("*.whl")), next((out / "from_tree").glob("*.whl"))


def _version() -> str:
    text = (ROOT / "mtmm_keras" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _contents(wheel: pathlib.Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()
                if not name.endswith("/RECORD")}


def test_the_sdist_builds_a_wheel_identical_in_content(dists):
    _, from_sdist, from_tree = dists
    assert from_sdist.name == from_tree.name == f"mtmm_keras-{_version()}-py3-none-any.whl"
    assert _contents(from_sdist) == _contents(from_tree)


def test_every_package_in_the_tree_is_in_the_wheel_and_nothing_else(dists):
    """Discovery, not a hand list: each folder of the tree holding an __init__.py is a package of the wheel."""
    _, wheel, _ = dists
    names = set(_contents(wheel))
    expected = {"mtmm_keras/" + str(p.relative_to(ROOT / "mtmm_keras")) for p in (ROOT / "mtmm_keras").rglob("*.py")}
    for folder in ("zoo", "export"):
        expected |= {f"mtmm_keras/{folder}/" + str(p.relative_to(ROOT / folder)) for p in (ROOT / folder).rglob("*.py")}
    expected = {name for name in expected if "__pycache__" not in name}
    assert expected == {name for name in names if name.endswith(".py")}
    tops = {name.split("/")[0] for name in names}
    assert tops == {"mtmm_keras", f"mtmm_keras-{_version()}.dist-info"}  # no top-level zoo/, export/, tests/
    for entry in (ROOT / "zoo" / "entries").iterdir():  # every zoo entry ships its preset files
        assert {f"mtmm_keras/zoo/entries/{entry.name}/{f}" for f in ("config.json", "metadata.json")} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mtmm = mtmm_keras.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_sdist_carries_the_sources_and_no_build_leftovers(dists):
    sdist, _, _ = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "setup.py", "README.md", "zoo/registry.py", "export/api.py",
            "mtmm_keras/weighting/__init__.py", "mtmm_keras/distribute/__init__.py"} <= names
    assert not any(name.startswith(("build/", ".venv/", "runs/")) for name in names)


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory):
    """A fresh virtualenv with the wheel installed non-editable; dependencies seen through a .pth file."""
    _, wheel, _ = dists
    folder = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)])
    python = folder / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    purelib = pathlib.Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "_mtmm_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder


def _clean_env(venv: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1", VIRTUAL_ENV=str(venv),
               TF_CPP_MIN_LOG_LEVEL="3")
    return env


def test_the_wheels_declared_requirements_are_met(venv, tmp_path):
    code = (
        "import importlib.metadata as md\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for text in md.requires('mtmm-keras'):\n"
        "    req = Requirement(text)\n"
        "    if req.marker and not any(req.marker.evaluate({'extra': e}) for e in ('export', 'data')):\n"
        "        continue\n"
        "    try:\n"
        "        version = md.version(req.name)\n"
        "    except md.PackageNotFoundError:\n"
        "        bad.append(f'{req} (not installed)'); continue\n"
        "    if not req.specifier.contains(version, prereleases=True):\n"
        "        bad.append(f'{req} (have {version})')\n"
        "print(md.version('mtmm-keras')); assert not bad, bad\n"
    )
    result = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_clean_env(venv))
    assert result.stdout.split()[-1] == _version()


@pytest.mark.timeout(1500)  # its subprocess has 1200 s
def test_the_smoke_suite_passes_from_outside_the_tree(venv, tmp_path):
    """Import, every builder and weighting method fits, every zoo entry loads, `mtmm demo --no-zoo`,
    `mtmm zoo verify`, `mtmm export zoo:...`: tests/installed/check_installed.py, run by the venv's pytest."""
    run_dir = tmp_path / "user"
    run_dir.mkdir()
    shutil.copy(SMOKE, run_dir / "check_installed.py")
    (run_dir / "pytest.ini").write_text("[pytest]\n")  # keeps pytest from finding this repo's configuration
    entries = sorted(p.name for p in (ROOT / "zoo" / "entries").iterdir() if (p / "recipe.json").is_file())
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "check_installed.py"],
        cwd=run_dir, env={**_clean_env(venv), "MTMM_EXPECTED_ZOO_ENTRIES": ",".join(entries)}, capture_output=True,
        text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed(, \d+ warnings?)? in .*", summary), summary  # no skip, no failure
