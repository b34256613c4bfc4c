"""Under `CI=true`, a skip because a package or data set is missing is a failure (issue 21).

The test oracles (TorchJD, open_clip, PyTorch, keras-hub, cvxpy, jax) and the datasets are installed by
`make install`, so in CI a skip saying one is missing means the run did not test what it claims to.
Skips that are deliberate (another backend, another OS, a kernel feature) say so in their reason and
stay skips. tests/conftest.py imports the two hooks; tests/test_ci_skips.py runs them on a tiny suite.
"""

from __future__ import annotations

import os
import re

import pytest

# A reason that says something is missing; `pytest.importorskip` is recognised by its traceback as well
# (its own default reason is "could not import 'x': No module named 'x'").
MISSING_REASON = re.compile(
    r"could not import|no module named|not installed|is missing|missing anyway|source not installed"
    r"|required is:|has __version__",
    re.IGNORECASE,
)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _raised_by_importorskip(excinfo) -> bool:
    tb = excinfo.tb if excinfo is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "importorskip":
            return True
        tb = tb.tb_next
    return False


def missing_dependency_skip(reason: str, excinfo=None) -> bool:
    """Is a skip with this reason (raised as `excinfo`, when known) about a missing package or data?"""
    return _raised_by_importorskip(excinfo) or bool(MISSING_REASON.search(reason))


def _fail_instead_of_skip(report, excinfo) -> None:
    reason = skip_reason(report)
    if missing_dependency_skip(reason, excinfo):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: skipped because something it needs is missing ({reason}); in CI that is a failure, "
            "not a skip: install it (`make install`) or fix why it is not found."
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_instead_of_skip(report, call.excinfo)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (a module-level `pytest.importorskip`)."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _fail_instead_of_skip(report, None)  # a collect report keeps no traceback: the reason decides
