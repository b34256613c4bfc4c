"""The train-speed harness's own arithmetic: FLOP counting and the timing summaries (no torch needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import mtmm_keras as mk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a repo folder, not installed
from benchmarks import train_speed  # noqa: E402

TASKS = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)]


def test_hard_sharing_flops_match_hand_formula():
    model = mk.builders.hard_sharing((100,), TASKS, compile=False)
    pairs = [(100, 128), (128, 64), (64, 1), (64, 1), (64, 2)]
    assert train_speed.training_flops_per_sample(model) == 6 * sum(i * o for i, o in pairs)


def test_soft_sharing_flops_count_every_tower():
    model = mk.builders.soft_sharing((100,), TASKS, compile=False)
    pairs = [(100, 128), (128, 64)]
    heads = [(64, 1), (64, 1), (64, 2)]
    assert train_speed.training_flops_per_sample(model) == 6 * (3 * sum(i * o for i, o in pairs) + sum(i * o for i, o in heads))


def test_joint_embedding_flops_count_conv_lstm_and_projections():
    encoders = {"text": mk.encoders.text(50, 6, embedding_dim=8, hidden_dim=4),
                "image": mk.encoders.image((8, 8, 3), filters=(4, 8), output_dim=4)}
    model = mk.builders.joint_embedding(encoders, embedding_dim=4, compile=False)
    lstm = 6 * 4 * (8 + 4) * 4  # steps · gates · (in + hidden) · hidden
    conv1 = 8 * 8 * 3 * 3 * 3 * 4  # output positions · window · in · out
    conv2 = 4 * 4 * 3 * 3 * 4 * 8  # after the 2×2 max-pool
    dense = 8 * 4 + 4 * 4 + 4 * 4  # image features, two projections
    assert train_speed.training_flops_per_sample(model) == 6 * (lstm + conv1 + conv2 + dense)


def test_summary_and_ratio():
    s = train_speed.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert train_speed.summarize([5.0, 1.0, 4.0])["median"] == 4.0
    assert train_speed.ratio({"median": 6.0}, {"median": 2.0}) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        train_speed.summarize([])


def test_data_is_identical_for_both_sides_and_shaped_as_documented():
    x1, y1 = train_speed.make_data("hard_sharing", 32)
    x2, y2 = train_speed.make_data("hard_sharing", 32)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (32, 100) and {k: v.shape[1] for k, v in y1.items()} == {"a": 1, "b": 1, "c": 2}
    x, labels = train_speed.make_data("joint_embedding", 16)
    assert x["text"].shape == (16, 32) and x["text"].dtype == np.int32
    assert x["image"].shape == (16, 32, 32, 3) and set(np.unique(labels)) <= {-1.0, 1.0}


def test_torch_reference_matches_keras_parameter_counts():
    pytest.importorskip("torch")
    from benchmarks import torch_reference

    for case in ("hard_sharing", "soft_sharing"):
        model, _ = torch_reference.build(case)
        keras_model = (mk.builders.hard_sharing if case == "hard_sharing" else mk.builders.soft_sharing)((100,), TASKS, compile=False)
        assert sum(p.numel() for p in model.parameters()) == keras_model.count_params()


def test_builder_compile_defaults_are_fast_and_overridable():
    """The defaults the harness measures: 32 steps per execution and, for stacked towers, XLA —
    unless the caller says otherwise."""
    model = mk.builders.hard_sharing((4,), [mk.Task("a", 1)], trunk_units=(4,))
    assert model.steps_per_execution == 32
    soft = mk.builders.soft_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], tower_units=(4,))
    assert soft.steps_per_execution == 32 and soft.jit_compile is True
    two = [mk.Task("a", 1), mk.Task("b", 1)]
    for expert_builder in (mk.builders.mmoe, mk.builders.cgc, mk.builders.ple):  # expert banks: XLA too
        assert expert_builder((4,), two, expert_units=(4,)).jit_compile is True, expert_builder.__name__
    model = mk.builders.soft_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], tower_units=(4,), steps_per_execution=1,
                                     jit_compile=False)
    assert model.steps_per_execution == 1 and model.jit_compile is False
    encoders = {"text": mk.encoders.text(10, 4, embedding_dim=4, hidden_dim=4, kind="conv"),
                "image": mk.encoders.image((8, 8), filters=(4,), output_dim=4)}
    assert mk.builders.joint_embedding(encoders, embedding_dim=4).steps_per_execution == 32


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_process_cpu_seconds_counts_this_process_work():
    """Checked against time.process_time() (the same user + system time, read by the C library) and on a
    child process that is busy and then idle: the loops are bounded by their own clock, never by the
    function under test, so a broken reading fails instead of spinning forever."""
    import os
    import subprocess
    import time

    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    before, before_own = train_speed.process_cpu_seconds(os.getpid()), time.process_time()
    total = 0
    while time.process_time() - before_own < 0.2:  # 200 ms of CPU
        total += sum(range(10_000))
    used, used_own = train_speed.process_cpu_seconds(os.getpid()) - before, time.process_time() - before_own
    assert used == pytest.approx(used_own, abs=3 * tick)

    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\n"  # busy: 300 ms of CPU
        "print('busy', flush=True)\n"
        "sys.stdin.readline()\n"  # idle until told to go
    )], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "busy\n"
        busy = train_speed.process_cpu_seconds(child.pid)
        assert busy >= 0.3 - tick  # the interpreter's start-up adds to it
        time.sleep(0.3)
        assert train_speed.process_cpu_seconds(child.pid) - busy <= 2 * tick  # waiting on stdin costs nothing
    finally:
        child.communicate("go\n", timeout=30)
    assert train_speed.process_cpu_seconds(2**22 + 12345) is None  # no such process


def test_busy_machines_are_refused_unless_allowed():
    assert train_speed.busy_refusal(None, False, "x") is None  # unknown load (no /proc): measure
    assert train_speed.busy_refusal(train_speed.BUSY_CORES, False, "x") is None
    message = train_speed.busy_refusal(1.5, False, "while hard_sharing was timed")
    assert "1.50 cores" in message and "--allow-busy" in message and "hard_sharing" in message
    assert train_speed.busy_refusal(1.5, True, "x") is None


def test_setup_is_the_first_run_less_the_median_steady_run():
    split = train_speed.setup_and_steady(3.0, [1.0, 2.0, 1.5])
    assert split == {"first_run_s": 3.0, "steady_run_s": 1.5, "setup_s": 1.5}
    assert train_speed.setup_and_steady(1.0, [1.2, 1.4])["setup_s"] == 0.0  # never negative


class _StubWorker:
    """A worker answering `prepare`/`time` with fixed numbers (this process's pid for the CPU sampling)."""

    def __init__(self, first_s, run_s):
        import os
        from types import SimpleNamespace

        self.first_s, self.run_s, self.calls = first_s, run_s, []
        self.proc = SimpleNamespace(pid=os.getpid())

    def call(self, op, **kwargs):
        self.calls.append(op)
        if op == "prepare":
            return {"warmup_s": self.first_s, "train_flops_per_sample": 100, "parameters": 7,
                    "counted_train_flops_per_sample": None, "compile": {}}
        assert op == "time"
        return {"seconds": self.run_s}


def _stub_load(cores):
    class Load:
        def __init__(self, pids):
            self.pids = pids

        def cores(self):
            return cores

    return Load


@pytest.mark.parametrize("other_cores, allow_busy", [(0.0, False), (1.5, False), (1.5, True)])
def test_a_case_splits_setup_from_steady_state_and_refuses_busy_ratios(other_cores, allow_busy):
    workers = {"torch": _StubWorker(5.0, 2.0), "jax": _StubWorker(4.0, 0.5)}
    spec = {"num_samples": 1000, "batch_size": 100, "epochs": 2, "repeats": 3}
    entry = train_speed.measure_case(workers, ["jax"], "hard_sharing", spec, 0, 0.0, {}, 1e9, allow_busy,
                                     foreign=_stub_load(other_cores))
    assert workers["jax"].calls == ["prepare", "time", "time", "time"]  # one set-up run, then the repeats
    side, torch_side = entry["mtmm"]["jax"], entry["torch"]
    assert side["setup_and_steady"] == {"first_run_s": 4.0, "steady_run_s": 0.5, "setup_s": 3.5}
    assert torch_side["setup_and_steady"]["setup_s"] == 3.0
    assert side["samples_per_s"]["median"] == 2000 / 0.5 and entry["setup"]["repeats"] == 3
    busy = other_cores > train_speed.BUSY_CORES
    assert entry["busy"] is busy
    if busy and not allow_busy:
        assert side["ratio_over_torch"] is None and "--allow-busy" in entry["refused"]
    else:
        assert side["ratio_over_torch"] == pytest.approx(4.0) and "refused" not in entry
    line = train_speed._case_line("hard_sharing", entry)
    assert ("not reported" in line) == (busy and not allow_busy) and ("[busy]" in line) == (busy and allow_busy)
    report = {"mtmm": {"jax": {}}, "cases": {"hard_sharing": entry},
              "cli_startup": {label: {"median": 0.1, "returncode": 0} for label in ("mtmm --help", "mtmm zoo list")}}
    checks = train_speed._checks(report)
    assert ("hard_sharing mtmm/torch (jax)" in checks) == (not busy or allow_busy)


def test_the_harness_exits_before_measuring_on_a_busy_machine(monkeypatch, capsys):
    monkeypatch.setattr(train_speed, "ForeignLoad", _stub_load(1.8))
    monkeypatch.setattr(train_speed, "cli_startup", lambda *a: pytest.fail("measured on a busy machine"))
    assert train_speed.main(["--quick", "--busy-probe", "0", "--cases", "hard_sharing"]) == 3
    err = capsys.readouterr().err
    assert "refusing to measure" in err and "1.80 cores" in err and "--allow-busy" in err


def test_joint_embedding_floor_computes_the_torch_reference_towers():
    """The floor is only a bound if it does the reference's work: same text state and image embedding."""
    import torch

    from benchmarks import joint_embedding_floor, torch_reference

    torch.manual_seed(0)
    model, _ = torch_reference.build("joint_embedding", vocab_size=train_speed.JOINT["vocab_size"])
    x, y = train_speed.make_data("joint_embedding", 4)
    tokens, images = torch_reference.to_tensors("joint_embedding", x, y)[0]
    text, image = joint_embedding_floor.towers(joint_embedding_floor.torch_tower_weights(model), x["text"], x["image"])
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(text), model.text(tokens).numpy(), atol=1e-5)
        np.testing.assert_allclose(np.asarray(image), model.image(images).numpy(), atol=1e-5)
    assert np.abs(np.asarray(image)).max() > 0  # a ReLU tower that is all zeros would match trivially


def test_joint_embedding_floor_verdict_follows_the_bound():
    from benchmarks import joint_embedding_floor

    assert joint_embedding_floor.bound(floor_s=0.2, torch_s=0.1) == 0.5
    assert joint_embedding_floor.verdict(0.5).startswith("unreachable on XLA:CPU")
    assert joint_embedding_floor.verdict(1.3).startswith("not ruled out")
    # 130 MFLOP per sample × 64 in 80 ms at a 350 GFLOP/s peak: 29.7 % at most, whatever else the step does
    assert joint_embedding_floor.peak_fraction_bound(130e6 * 64, 0.080, 350e9) == pytest.approx(0.2971, abs=1e-4)
    assert joint_embedding_floor.peak_verdict(0.646).startswith("unreachable with TensorFlow's convolution kernels")
    assert "64.6% of the fp32 peak (target 70%)" in joint_embedding_floor.peak_verdict(0.646)
    assert joint_embedding_floor.peak_verdict(0.75).startswith("not ruled out")


def test_joint_embedding_floor_rejects_unknown_variants(capsys):
    from benchmarks import joint_embedding_floor

    with pytest.raises(SystemExit):
        joint_embedding_floor.main(["--variants", "cudnn"])
    assert "--variants: unknown ['cudnn']; choose from default" in capsys.readouterr().err


def test_tf_step_floor_names_the_depth_that_loses_the_target():
    from benchmarks import tf_step_floor

    ratios = {"raw TensorFlow": 3.1, "Keras train_step": 1.9, "mtmm train_step": 1.7, "mtmm fit": 1.6}
    assert tf_step_floor.verdict(ratios) == "2.0× is lost at 'Keras train_step' (1.90×); every depth before it reaches it"
    assert tf_step_floor.verdict(dict.fromkeys(ratios, 2.5)) == "every depth reaches 2.0×"
    # MMoE: the raw depth counts at its best of graph and XLA
    mmoe = {"raw TensorFlow": 2.4, "raw TensorFlow, XLA": 3.2, "Keras train_step": 2.9, "mtmm train_step": 2.5,
            "mtmm fit": 2.4}
    assert tf_step_floor.verdict(mmoe, 3.0) == "3.0× is lost at 'Keras train_step' (2.90×); every depth before it reaches it"
    assert tf_step_floor.verdict({**mmoe, "raw TensorFlow, XLA": 2.6}, 3.0).startswith("3.0× is lost at 'raw TensorFlow' (2.60×)")


def test_tf_step_floor_runs_every_depth_and_writes_its_report(tmp_path, capsys):
    """The benchmark itself, at its smallest: every depth trains and gets a rate (no timing is asserted)."""
    import json

    from benchmarks import tf_step_floor

    out = tmp_path / "floor.json"
    assert tf_step_floor.main(["--num-samples", "8192", "--epochs", "1", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["ratio_over_torch"]) == {*tf_step_floor.DEPTHS, tf_step_floor.REFERENCE}
    assert all(rate > 0 for rate in report["samples_per_s"].values())
    assert "| mtmm fit |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tf_step_floor.main(["--num-samples", "100"])
    assert "--num-samples must hold at least 32 batches of --batch-size (8192), got 100" in capsys.readouterr().err


def test_tf_step_floor_mmoe_case_runs_every_depth_against_deepctr(tmp_path, capsys):
    """`--case mmoe`: the hand-written MMoE (graph and XLA), Keras's and mtmm's steps and fits all train, against
    DeepCTR-Torch's MMOE (a test extra: under CI=true a missing one fails, tests/ci_skips.py)."""
    import json

    pytest.importorskip("deepctr_torch")
    from benchmarks import tf_step_floor

    out = tmp_path / "floor_mmoe.json"
    assert tf_step_floor.main(["--case", "mmoe", "--num-samples", "2048", "--batch-size", "64", "--epochs", "1",
                               "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reference"] == "DeepCTR-Torch MMOE" and report["target"] == 3.0
    assert set(report["ratio_over_torch"]) == {*tf_step_floor.CASE_DEPTHS["mmoe"], tf_step_floor.REFERENCE}
    assert all(rate > 0 for rate in report["samples_per_s"].values())
    assert "| raw TensorFlow, XLA |" in capsys.readouterr().out


def test_tf_step_floor_mmoe_case_says_what_to_install_without_deepctr(monkeypatch, capsys):
    from benchmarks import tf_step_floor, train_speed

    monkeypatch.setattr(train_speed, "_deepctr_available", lambda: False)
    with pytest.raises(SystemExit):
        tf_step_floor.main(["--case", "mmoe"])
    assert "--case mmoe needs DeepCTR-Torch (pip install deepctr-torch==0.3.0" in capsys.readouterr().err


def test_zoo_holdout_overrides_are_checked_and_the_holdout_is_inside_the_train_split(tmp_path):
    """benchmarks/zoo_holdout.py: a misspelt path is refused naming the keys there (a typo in `fit` would
    otherwise be ignored), the holdout rows are a disjoint part of the train split, and a short run writes every
    variant's table against the card's baselines."""
    import json

    from benchmarks import zoo_holdout
    from mtmm_keras.zoo import registry

    recipe = registry.recipe("penguins_hard")
    changed = zoo_holdout.apply_overrides(recipe, "fit.epochs=3+tasks.1.weight=2.0+encoders.features.normalize=true")
    assert (changed["fit"]["epochs"], changed["tasks"][1]["weight"], changed["encoders"]["features"]["normalize"]) == (3, 2.0, True)
    assert recipe["fit"]["epochs"] == 80 and "normalize" not in recipe["encoders"]["features"]  # the entry's own untouched
    with pytest.raises(ValueError, match=r"the recipe has no 'fit.epoch'; keys there: \['batch_size', 'epochs'"):
        zoo_holdout.apply_overrides(recipe, "fit.epoch=3")
    with pytest.raises(ValueError, match=r"'tasks.3': a list index from 0 to 2 is needed here"):
        zoo_holdout.apply_overrides(recipe, "tasks.3.weight=1")
    with pytest.raises(ValueError, match=r"is not JSON"):
        zoo_holdout.apply_overrides(recipe, "fit.epochs=three")
    fit, held = zoo_holdout.holdout_rows(266, 0.2, 123)
    assert len(held) == 53 and not set(fit) & set(held) and sorted({*fit, *held}) == list(range(266))
    out = tmp_path / "holdout.json"
    assert zoo_holdout.main(["penguins_hard", "--variant", "fit.epochs=2", "--ensemble", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    table = result["variants"]["fit.epochs=2"]["table"]
    assert [row["key"] for row in table] == ["species_accuracy", "sex_accuracy", "body_mass_rmse"]
    assert result["variants"]["fit.epochs=2"]["epochs_run"] == 2 and result["holdout_rows"] == 53
    pair = result["variants"]["fit.epochs=2 ×2"]  # the seed ensemble: two fits (seeds 0 and 1), outputs averaged
    assert pair["epochs_run"] == [2, 2] and [row["key"] for row in pair["table"]] == [row["key"] for row in table]
    assert pair["table"][2]["entry"] != table[2]["entry"]
    with pytest.raises(SystemExit):
        zoo_holdout.main(["penguins_hard", "--fraction", "1.5"])
    with pytest.raises(SystemExit):
        zoo_holdout.main(["penguins_hard", "--ensemble", "0"])


def test_penguins_cv_train_only_never_reads_the_test_rows_and_checks_variants_before_fitting():
    from benchmarks import penguins_cv

    features, labels = penguins_cv._rows(train_only=True)
    every, _ = penguins_cv._rows()
    assert features.shape == (266, 7) and every.shape == (333, 7) and set(labels) == {"species", "sex", "body_mass"}
    with pytest.raises(SystemExit):  # refused by the parser before any fold is fitted
        penguins_cv.main(["--train-only", "--variant", "fit.epoch=3"])


def test_penguins_cv_ensemble_scores_the_single_model_and_the_seed_ensemble_from_the_same_fits(capsys):
    from benchmarks import penguins_cv
    from benchmarks.zoo_holdout import apply_overrides
    from mtmm_keras.zoo import registry

    features, labels = penguins_cv._rows(train_only=True)
    recipe = apply_overrides(registry.recipe("penguins_hard"), "fit.epochs=2")
    train, test = np.arange(0, 200), np.arange(200, 266)
    single, pair = penguins_cv._entry_sex_accuracies(features, labels, train, test, recipe, ensemble=2)
    (alone,) = penguins_cv._entry_sex_accuracies(features, labels, train, test, recipe)
    assert single == alone  # the ensemble's first member is the single model: same seed, same fit
    assert 0.0 <= pair <= 1.0 and pair * 66 == pytest.approx(round(pair * 66))  # a count of the 66 rows
    with pytest.raises(SystemExit):
        penguins_cv.main(["--train-only", "--ensemble", "0"])
    assert "--ensemble must be a positive number of seeds, got 0" in capsys.readouterr().err


def test_penguins_cv_family_ranks_on_train_rows_only_and_scores_the_cards_test_rows(monkeypatch, capsys):
    """--family: cross-validation reads only the train rows (flipping every test row's sex leaves it unchanged and
    turns each test accuracy a into 1 - a), and the card's logistic regression scores what the card says."""
    import json

    from benchmarks import penguins_cv

    result = penguins_cv.family(repeats=1)
    entry = Path(__file__).resolve().parent.parent / "zoo" / "entries" / "penguins_hard"
    card = json.loads((entry / "metadata.json").read_text())
    linear = card["simple_baselines"]["metrics"]["linear"]["sex_accuracy"]
    assert result["family"][penguins_cv.FAMILY[0]]["test_accuracy"] == pytest.approx(linear)
    assert list(result["family"]) == list(penguins_cv.FAMILY) and result["test_rows"] == 67
    real = penguins_cv._rows

    def flipped(train_only=False):
        features, labels = real(train_only)
        if not train_only:
            labels = {**labels, "sex": np.concatenate([labels["sex"][:266], 1 - labels["sex"][266:]])}
        return features, labels

    monkeypatch.setattr(penguins_cv, "_rows", flipped)
    other = penguins_cv.family(repeats=1)
    for name, row in result["family"].items():
        assert other["family"][name]["train_cv_mean"] == row["train_cv_mean"], name
        assert other["family"][name]["test_accuracy"] == pytest.approx(1.0 - row["test_accuracy"]), name
    with pytest.raises(SystemExit):
        penguins_cv.main(["--family", "--train-only"])
    assert "--family fits only scikit-learn models" in capsys.readouterr().err


def test_fits_per_run_times_consecutive_fits_and_reports_the_time_per_fit():
    """--fits-per-run N: each timed run asks the worker for N fits in a row and divides its seconds by N."""
    workers = {"torch": _StubWorker(5.0, 2.0), "jax": _StubWorker(4.0, 0.5)}
    asked = []
    for worker in workers.values():
        original = worker.call

        def call(op, _original=original, **kwargs):
            asked.append((op, kwargs.get("fits")))
            result = _original(op, **kwargs)
            return {"seconds": result["seconds"] * kwargs["fits"]} if op == "time" else result

        worker.call = call
    spec = {"num_samples": 1000, "batch_size": 100, "epochs": 2, "repeats": 2}
    entry = train_speed.measure_case(workers, ["jax"], "hard_sharing", spec, 0, 0.0, {}, 1e9, False,
                                     foreign=_stub_load(0.0), fits_per_run=4)
    assert [fits for op, fits in asked if op == "time"] == [4, 4, 4, 4]
    assert entry["setup"]["fits_per_run"] == 4
    assert entry["mtmm"]["jax"]["samples_per_s"]["median"] == 2000 / 0.5  # per fit, not per run of four
    assert entry["mtmm"]["jax"]["ratio_over_torch"] == pytest.approx(4.0)
    with pytest.raises(SystemExit):
        train_speed.main(["--quick", "--fits-per-run", "0"])


@pytest.mark.parametrize("other_cores, allow_busy", [(0.0, False), (1.5, False)])
def test_backend_speed_interleaves_both_backends_and_reports_jax_over_tensorflow(other_cores, allow_busy):
    from benchmarks import backend_speed

    workers = {"tensorflow": _StubWorker(3.0, 1.0), "jax": _StubWorker(2.0, 0.4)}
    spec = {"num_samples": 1000, "batch_size": 100, "epochs": 2}
    entry = backend_speed.measure(workers, "cgc", spec, 3, 0.0, allow_busy, foreign=_stub_load(other_cores))
    assert workers["tensorflow"].calls == workers["jax"].calls == ["prepare", "time", "time", "time"]
    assert entry["backends"]["jax"]["samples_per_s"]["median"] == 2000 / 0.4
    assert entry["backends"]["tensorflow"]["setup_and_steady"]["setup_s"] == 2.0
    table = backend_speed.markdown({"cases": {"cgc": entry}})
    if other_cores > train_speed.BUSY_CORES:
        assert "jax_over_tensorflow" not in entry and "--allow-busy" in entry["refused"]
        assert "| `cgc` | 2,000 | 5,000 | refused (busy) | — |" in table
    else:
        assert entry["jax_over_tensorflow"] == pytest.approx(2.5)
        assert "| `cgc` | 2,000 | 5,000 | 2.50 | JAX |" in table


@pytest.mark.parametrize("case", ["cross_stitch", "cgc", "ple", "concat_fusion", "attention_fusion", "gated_fusion",
                                  "transformer_fusion"])
def test_backend_speed_cases_build_and_train_on_their_data(case):
    from benchmarks import backend_speed

    x, y = backend_speed.make_data(case, 64)
    model = backend_speed.build(case, mk)
    assert set(model.output_names if hasattr(model, "output_names") else model.outputs) == set(y)
    if case.endswith("_fusion"):
        assert {k: v.shape for k, v in x.items()} == {"left": (64, 60), "right": (64, 40)}
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_backend_speed_checks_its_flags_before_starting_workers(capsys):
    from benchmarks import backend_speed

    with pytest.raises(SystemExit):
        backend_speed.main(["--cases", "cgc,mmoe"])
    assert "--cases: unknown case(s) ['mmoe']; choose from cross_stitch, cgc, ple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        backend_speed.main(["--repeats", "0"])
    assert "--repeats must be a positive number of fits, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown case 'mmoe'; choose from cross_stitch"):
        backend_speed.make_data("mmoe", 8)


@pytest.mark.skipif(__import__("keras").backend.backend() != "tensorflow", reason="TensorFlow's tracing")
def test_first_fit_measures_both_ways_and_leaves_the_library_as_it_was(capsys):
    from benchmarks import first_fit
    from mtmm_keras.models import in_memory_fit

    real = in_memory_fit.build_before_tracing
    inside, before = first_fit.one("hard_sharing", "built_in_the_trace"), first_fit.one("hard_sharing", "built_before")
    assert (inside["traces"], before["traces"]) == (2, 1) and inside["seconds"] > 0 and before["seconds"] > 0
    assert in_memory_fit.build_before_tracing is real
    with pytest.raises(SystemExit):
        first_fit.main(["--builders", "hard_sharing,lstm"])
    assert "--builders: unknown ['lstm']; choose from hard_sharing" in capsys.readouterr().err
