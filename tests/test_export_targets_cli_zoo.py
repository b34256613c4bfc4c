"""Issue 19, defect: `mtmm export zoo:NAME` works for EVERY zoo entry (two fusion entries used to exit 1 with
`KeyError: 'modality_mask'`). One subprocess runs the CLI's `main` once per entry (ONNX only, the cheapest format
that still converts and verifies the whole graph), so the imports and TensorFlow start-up are paid once."""

import json
import os
import subprocess
import sys

import keras
import pytest

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend"),
    pytest.mark.slow,
]

SCRIPT = r"""
import contextlib, io, json, sys, traceback
from mtmm_keras.cli import main
from mtmm_keras.zoo import registry

out, extra = sys.argv[1], sys.argv[2:]
results = {}
for name in registry.list():
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(["export", f"zoo:{name}", "--out", f"{out}/{name}", *extra])
        except BaseException:  # a traceback escaping main is a failure too
            traceback.print_exc()
            code = "raised"
    results[name] = {"code": code, "stdout": stdout.getvalue()[-1500:], "stderr": stderr.getvalue()[-1500:]}
print("RESULTS " + json.dumps(results))
"""


def _run_every_entry(tmp_path, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *extra], capture_output=True, text=True,
                          env=env, timeout=1500, stdin=subprocess.DEVNULL)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.mark.timeout(1600)
def test_cli_exports_every_zoo_entry(tmp_path):
    from mtmm_keras.zoo import registry

    results = _run_every_entry(tmp_path, "--format", "onnx")
    assert sorted(results) == sorted(registry.list())
    failed = {name: r for name, r in results.items() if r["code"] != 0}
    assert not failed, json.dumps(failed, indent=1)[-6000:]
    for name, r in results.items():
        assert "Traceback" not in r["stderr"] and "all artifacts verified ✓" in r["stdout"], (name, r)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert [a["format"] for a in manifest["artifacts"]] == ["onnx"]
