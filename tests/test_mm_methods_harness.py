"""benchmarks/mm_methods.py: recipes, the missing-modality inputs, the tables, and one tiny real run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a repo folder, not installed
from benchmarks import mm_methods  # noqa: E402


def test_masked_inputs_zero_the_missing_modality_and_its_mask_column():
    x = {"image": np.ones((3, 2, 2), "uint8"), "audio": np.full((3, 4), 2.0, "float32")}
    out = mm_methods.masked_inputs(x, ["image", "audio"], "audio")
    np.testing.assert_array_equal(out["modality_mask"], [[1, 0]] * 3)
    assert not out["audio"].any() and out["image"].all()
    assert x["audio"].all()  # the caller's arrays are untouched
    np.testing.assert_array_equal(mm_methods.masked_inputs(x, ["image", "audio"], None)["modality_mask"], np.ones((3, 2)))


def test_fusion_recipe_swaps_the_builder_and_keeps_the_entry_encoders():
    recipe = mm_methods.fusion_recipe("av_digits", "gated", 0.3, seed=2, epochs=4)
    assert recipe["builder"] == "gated_fusion"
    assert recipe["builder_kwargs"]["modality_dropout"] == 0.3 and recipe["builder_kwargs"]["modality_mask"] is True
    assert list(recipe["encoders"]) == ["image", "audio"]
    assert recipe["fit"]["seed"] == 2 and recipe["fit"]["epochs"] == 4
    movies = mm_methods.fusion_recipe("movies", "concat", 0.0, seed=0, epochs=None)
    assert [t["name"] for t in movies["tasks"]] == list(mm_methods.MOVIES_GENRES)


def test_fusion_table_has_one_column_per_condition_and_mean_std():
    runs = [{"model": "gated", "modality_dropout": 0.3, "seed": s, "status": "ok", "seconds_per_epoch": 1.0,
             "scores": {"all": 0.9 + 0.02 * s, "no audio": 0.8}} for s in (0, 1)]
    runs.append({"model": "only image", "modality_dropout": None, "seed": 0, "status": "ok", "seconds_per_epoch": 1.0,
                 "scores": {"only": 0.85}})
    table = mm_methods.fusion_table("av_digits", runs)
    assert "| gated | 0.3 | 2 | 0.910 ± 0.014 | 0.800 ± 0.000 | – |" in table
    assert "| only image | – | 1 | – | – | 0.850 |" in table


@pytest.mark.slow
def test_tiny_run_scores_fusions_with_modalities_missing(tmp_path):
    out = tmp_path / "mm.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.mm_methods", "--datasets", "mfeat", "--fusions", "gated",
         "--modality-dropout", "0.3", "--losses", "", "--loss-batches", "", "--seeds", "0", "--epochs", "1",
         "--max-train-rows", "200", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = report["fusion"]["mfeat"]
    assert all(r["status"] == "ok" for r in runs), [r["status"] for r in runs]
    fused = [r for r in runs if r["model"] == "gated"][0]
    assert set(fused["scores"]) == {"all", "no fou", "no fac", "no kar", "no pix", "no zer", "no mor"}
    assert all(0.0 <= v <= 1.0 for v in fused["scores"].values())
    assert "**mfeat** (accuracy)" in out.with_suffix(".md").read_text()


def test_bad_arguments_are_one_clean_line():
    done = subprocess.run([sys.executable, "-m", "benchmarks.mm_methods", "--fusions", "late"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "choose from attention, concat, gated, transformer" in done.stderr
    assert "Traceback" not in done.stderr
