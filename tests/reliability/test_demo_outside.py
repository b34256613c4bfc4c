"""`mtmm demo --out DIR` never overwrites a user's files: checked before any training."""

import json
import os
import subprocess

import pytest

from mtmm_keras import demo
from reliability_helpers import assert_clean_cli_error, tree_listing


def _cli_here(capsys, *argv):
    from mtmm_keras.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(demo, "builders_tour", lambda *a, **k: pytest.fail("trained before --out was checked"))


def test_demo_refuses_a_project_folder_before_training(user_folder, capsys, no_training):
    (user_folder / "hard_sharing.keras").write_text("the user's own model")
    before = tree_listing(user_folder)
    result = _cli_here(capsys, "demo", "--out", str(user_folder), "--no-zoo")
    assert_clean_cli_error(result, "holds files this tool did not write")
    assert tree_listing(user_folder) == before


def test_demo_folder_with_a_foreign_file_is_refused(tmp_path, capsys, no_training):
    out = tmp_path / "demo"
    demo.claim_out_dir(str(out))
    (out / "notes.txt").write_text("mine")
    before = tree_listing(tmp_path)
    result = _cli_here(capsys, "demo", "--out", str(out), "--no-zoo")
    assert_clean_cli_error(result, "also files it did not write (notes.txt)")
    assert tree_listing(tmp_path) == before


def test_demo_reuses_its_own_folder(tmp_path):
    out = tmp_path / "demo"
    first = demo.claim_out_dir(str(out))
    (out / "hard_sharing.keras").write_text("an earlier demo model")
    assert demo.claim_out_dir(str(out)) == first
    marker = json.loads((out / "demo.json").read_text())
    assert marker["written_by"]["kind"] == "demo" and "hard_sharing.keras" in marker["files"]
    assert sorted(os.listdir(out)) == ["demo.json", "hard_sharing.keras"]
