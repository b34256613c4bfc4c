"""Fixtures for the reliability suite; the plain helpers live in reliability_helpers.py (importable from tests)."""

from __future__ import annotations

import pytest

from reliability_helpers import assert_clean_cli_error, run_cli, run_python, tree_listing  # noqa: F401  (re-exported)


@pytest.fixture
def user_folder(tmp_path):
    """A folder that already holds a user's files (a CSV, a source tree, a hidden file)."""
    folder = tmp_path / "work"
    (folder / "src").mkdir(parents=True)
    (folder / "important.csv").write_text("id,value\n1,2\n")
    (folder / "src" / "train.py").write_text("print('mine')\n")
    (folder / ".env").write_text("SECRET=1\n")
    return folder
