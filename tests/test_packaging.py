"""The install puts zoo/ and export/ under mtmm_keras only: nothing top-level named `zoo` or `export`."""

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_subpackages_import_under_mtmm_keras_only(tmp_path):
    code = (
        "import importlib.util as u, mtmm_keras.zoo, mtmm_keras.export;"
        "print(u.find_spec('zoo') is None, u.find_spec('export') is None)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.slow
def test_wheel_has_no_top_level_zoo_or_export(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("mtmm_keras-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "zoo" not in tops and "export" not in tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "mtmm_keras/zoo/__init__.py" in names and "mtmm_keras/export/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mtmm = mtmm_keras.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
