"""The README's Python examples run as written, top to bottom, in a fresh process in an empty folder."""

import os
import re
from pathlib import Path

import pytest

from reliability_helpers import run_python

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if not b.lstrip().startswith("mk.Task(name, units")]  # that one is a signature


def test_readme_has_the_examples_this_test_runs():
    text = "\n".join(_examples())
    for call in ("hard_sharing", "soft_sharing", "joint_embedding", "attention_fusion", "save_preset", "export_model",
                 "export_towers", "zoo.load", "zoo.verify"):
        assert call in text, call


@pytest.mark.slow
@pytest.mark.timeout(1500)  # its subprocess has 1200 s
def test_readme_examples_run_as_written(tmp_path):
    (tmp_path / "keep.txt").write_text("the user's file")
    code = "\n".join(_examples()).replace("epochs=10", "epochs=2")  # same calls, fewer epochs
    result = run_python(code, cwd=tmp_path, timeout=1200, env_extra={"PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "keep.txt").read_text() == "the user's file"
    assert sorted(os.listdir(tmp_path)) == ["exports", "hard.keras", "keep.txt", "presets"]
    assert sorted(os.listdir(tmp_path / "exports")) == ["hard", "towers"]
    assert (tmp_path / "presets" / "mine" / "metadata.json").is_file()
