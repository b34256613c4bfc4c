"""Zoo entries and presets from a user's side: `mtmm zoo train` checks --out first and swaps the entry in
whole, non-finite results are refused, presets reload in a new process, and every file is hash-checked."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.zoo import evaluation, registry
from reliability_helpers import assert_clean_cli_error, run_python, tree_listing


def _cli_here(capsys, *argv):
    from mtmm_keras.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def _small_model():
    model = mk.builders.hard_sharing((3,), [mk.Task("y", 2, loss="sparse_categorical_crossentropy")], trunk_units=(4,))
    model.fit(np.ones((8, 3), "float32"), {"y": np.zeros(8, "int64")}, epochs=1, verbose=0)
    return model


@pytest.fixture
def preset(tmp_path):
    model = _small_model()
    folder = tmp_path / "preset"
    mk.zoo.save_preset(model, folder, metrics={"y_accuracy": 0.5}, description="tiny")
    return folder, model


# --- mtmm zoo train: --out first, nothing before training is wasted -----------------------------------------
@pytest.mark.parametrize("make_out, message", [
    (lambda tmp, user: user, "holds files this tool did not write"),
    (lambda tmp, user: "", "`out_dir` is empty"),
    (lambda tmp, user: user / "important.csv", "is an existing file, not a folder"),
    (lambda tmp, user: "/proc/mtmm-no-such/entry", "is not writable"),
])
def test_train_refuses_a_bad_out_before_loading_data(tmp_path, user_folder, capsys, monkeypatch, make_out, message):
    def must_not_load(*args, **kwargs):
        raise AssertionError("data was loaded before --out was checked")

    monkeypatch.setattr(evaluation, "split_arrays", must_not_load)
    before = tree_listing(tmp_path)
    result = _cli_here(capsys, "zoo", "train", "penguins_hard", "--epochs", "1", "--out", str(make_out(tmp_path, user_folder)))
    assert_clean_cli_error(result, message)
    assert "training penguins_hard" not in result.stdout
    assert tree_listing(tmp_path) == before


def test_train_refuses_an_earlier_entry_without_force_and_replaces_it_with(tmp_path, capsys):
    out = tmp_path / "entry"
    first = _cli_here(capsys, "zoo", "train", "penguins_hard", "--epochs", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert mk.zoo.verify(str(out))
    before = tree_listing(tmp_path)
    again = _cli_here(capsys, "zoo", "train", "penguins_hard", "--epochs", "1", "--out", str(out))
    assert_clean_cli_error(again, "already holds an earlier zoo entry", "--force")
    assert tree_listing(tmp_path) == before
    forced = _cli_here(capsys, "zoo", "train", "penguins_hard", "--epochs", "2", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    meta = json.loads((out / registry.METADATA_FILE).read_text())
    assert meta["training"]["epochs"] == 2 and os.listdir(tmp_path) == ["entry"]


@pytest.mark.parametrize("where", ["labels", "inputs"])
def test_training_on_nan_data_writes_nothing(tmp_path, monkeypatch, where):
    real = evaluation.split_arrays

    def poisoned(recipe, split, limit=None):
        x, y = real(recipe, split, limit)
        if split == "train":
            target = y["body_mass"] if where == "labels" else x[next(iter(x))]
            target = target.astype("float32")
            # An infinite label is bad data (a NaN label would be a missing one, which training allows).
            target[3] = np.inf if where == "labels" else np.nan
            if where == "labels":
                y["body_mass"] = target
            else:
                x[next(iter(x))] = target
        return x, y

    monkeypatch.setattr(evaluation, "split_arrays", poisoned)
    with pytest.raises(ValueError, match="NaN|non-finite|infinite"):
        mk.zoo.train("penguins_hard", epochs=1, out_dir=str(tmp_path / "entry"), verbose=0)
    assert os.listdir(tmp_path) == []


def test_non_finite_weights_are_refused_naming_the_weight(tmp_path):
    model = _small_model()
    model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan, "float32"))
    with pytest.raises(ValueError, match="weight '.*kernel' holds NaN or infinite values.*Nothing was written"):
        mk.zoo.save_preset(model, tmp_path / "p")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("metrics, error, message", [
    ({"acc": float("nan")}, ValueError, "metric 'acc' is nan"),
    ({"acc": float("inf")}, ValueError, "metric 'acc' is inf"),
    ({"acc": "high"}, TypeError, "`metrics\\['acc'\\]` must be a number"),
])
def test_bad_metrics_are_refused(tmp_path, metrics, error, message):
    with pytest.raises(error, match=message):
        mk.zoo.save_preset(_small_model(), tmp_path / "p", metrics=metrics)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_train_killed_while_writing_the_entry_keeps_the_earlier_one(tmp_path):
    out = tmp_path / "entry"
    mk.zoo.train("penguins_hard", epochs=1, out_dir=str(out), verbose=0)
    before = tree_listing(tmp_path)
    slow_plot = ("import sys, time; import mtmm_keras.zoo.plotting as p; real = p.plot_history\n"
                 "def slow(*a, **k):\n    real(*a, **k); print('STAGED', flush=True); time.sleep(60)\n"
                 "p.plot_history = slow\nfrom mtmm_keras.cli import main\n"
                 f"sys.exit(main(['zoo', 'train', 'penguins_hard', '--epochs', '1', '--out', {str(out)!r}, '--force']))")
    proc = subprocess.Popen([sys.executable, "-c", slow_plot], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    for line in proc.stdout:  # new weights, config and curves are on disk in the staging folder now
        if "STAGED" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    staged = [n for n in os.listdir(tmp_path) if ".mtmm-staging-" in n]
    assert len(staged) == 1 and (tmp_path / staged[0] / registry.WEIGHTS_FILE).is_file()
    assert tree_listing(tmp_path, skip=staged[0]) == before  # the earlier entry, whole
    assert mk.zoo.verify(str(out))
    mk.zoo.train("penguins_hard", epochs=1, out_dir=str(out), verbose=0, overwrite=True)
    assert os.listdir(tmp_path) == ["entry"]  # the killed run's staging folder was cleaned


# --- presets: save, verify, load in a new process -----------------------------------------------------------
def test_preset_saved_in_one_process_loads_in_another(tmp_path):
    save = f"""
import numpy as np, mtmm_keras as mk
model = mk.builders.attention_fusion({{"a": mk.encoders.tabular(3), "b": mk.encoders.image((6, 6, 1), filters=(2,), output_dim=4)}},
                                     [mk.Task("y", 2, loss="sparse_categorical_crossentropy")], fusion_dim=4)
x = {{"a": np.random.default_rng(0).normal(size=(5, 3)).astype("float32"), "b": np.ones((5, 6, 6, 1), "float32")}}
model.fit(x, {{"y": np.zeros(5, "int64")}}, epochs=1, verbose=0)
mk.zoo.save_preset(model, {str(tmp_path / 'p')!r}, metrics={{"y_accuracy": 1.0}})
np.savez({str(tmp_path / 'io.npz')!r}, pred=model.predict(x, verbose=0)["y"], **x)
"""
    load = f"""
import numpy as np, mtmm_keras as mk
io = np.load({str(tmp_path / 'io.npz')!r})
model = mk.zoo.load({str(tmp_path / 'p')!r})
assert model.compiled, "compile settings travel in config.json"
np.testing.assert_allclose(model.predict({{"a": io["a"], "b": io["b"]}}, verbose=0)["y"], io["pred"], atol=1e-6)
print("OK", type(model).__name__)
"""
    first = run_python(save)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_python(load)
    assert second.returncode == 0 and "OK MultiTaskModel" in second.stdout, second.stderr[-3000:]
    names = sorted(os.listdir(tmp_path / "p"))
    assert names == ["card.md", "config.json", "metadata.json", "model.weights.h5"]


@pytest.mark.parametrize("tamper, message", [
    (lambda f: (f / "card.md").write_text("edited"), "card.md: sha256 mismatch"),
    (lambda f: (f / "config.json").unlink(), "config.json: missing"),
    (lambda f: (f / "extra.py").write_text("import os"), "extra.py: not listed in metadata.json"),
    (lambda f: (f / "model.weights.h5").write_bytes(b""), "model.weights.h5: sha256 mismatch"),
    (lambda f: (f / "metadata.json").write_text("{not json"), "is not valid JSON"),
    (lambda f: (f / "metadata.json").write_text(json.dumps({"sha256": {"../x": "0"}})), "../x: not a plain file name"),
])
def test_tampered_preset_is_refused_before_anything_is_built(preset, monkeypatch, tamper, message):
    folder, _ = preset
    tamper(folder)

    def must_not_build(*args, **kwargs):
        raise AssertionError("built from unverified files")

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", must_not_build)
    with pytest.raises(ValueError, match=message.replace(".", "\\.")):
        mk.zoo.load(str(folder))


def test_zoo_verify_cli_names_the_bad_file(preset, capsys):
    folder, _ = preset
    ok = _cli_here(capsys, "zoo", "verify", str(folder))
    assert ok.returncode == 0 and "✓ model.weights.h5" in ok.stdout and "files match metadata.json" in ok.stdout and "all 3 files" in ok.stdout
    (folder / "card.md").write_text("edited")
    bad = _cli_here(capsys, "zoo", "verify", str(folder))
    assert bad.returncode == 1 and "card.md: sha256 mismatch" in bad.stdout


def test_zoo_verify_cli_on_a_shipped_entry_runs_without_keras():
    code = ("import sys; from mtmm_keras.cli import main; code = main(['zoo', 'verify', 'penguins_hard']); "
            "print('keras' in sys.modules, code)")
    result = run_python(code)
    assert result.stdout.strip().endswith("False 0"), result.stdout + result.stderr[-2000:]
    assert "all 5 files match metadata.json" in result.stdout


def test_unsafe_lambda_is_refused_in_safe_mode_on_save_and_on_load(preset, tmp_path):
    inputs = keras.Input((2,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs))
    with pytest.raises(ValueError, match="cannot be rebuilt in Keras safe mode.*Lambda.*Nothing was written"):
        mk.zoo.save_preset(model, tmp_path / "p")
    assert not (tmp_path / "p").exists()
    folder, _ = preset  # a preset whose config was swapped for a Lambda model (hashes updated): load refuses
    config = keras.saving.serialize_keras_object(model)
    (folder / "config.json").write_text(json.dumps(config))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"]["config.json"] = __import__("hashlib").sha256((folder / "config.json").read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cannot rebuild the model.*Lambda"):
        mk.zoo.load(str(folder))


def test_save_preset_never_replaces_a_user_folder_and_replaces_an_earlier_preset_only_with_overwrite(user_folder, preset):
    folder, model = preset
    before = tree_listing(user_folder)
    with pytest.raises(ValueError, match="holds files this tool did not write"):
        mk.zoo.save_preset(model, user_folder, overwrite=True)
    assert tree_listing(user_folder) == before
    with pytest.raises(ValueError, match="already holds an earlier zoo entry"):
        mk.zoo.save_preset(model, folder)
    mk.zoo.save_preset(model, folder, metrics={"y_accuracy": 0.75}, overwrite=True)
    assert json.loads((folder / "metadata.json").read_text())["metrics"] == {"y_accuracy": 0.75}


@pytest.mark.parametrize("call, error, message", [
    (lambda: mk.zoo.load("no_such_entry"), ValueError, "Unknown zoo entry 'no_such_entry'; available entries: "),
    (lambda: mk.zoo.load("./no/such/folder"), FileNotFoundError, "preset folder './no/such/folder' does not exist"),
    (lambda: mk.zoo.load(42), TypeError, "must be a name or a preset folder path"),
    (lambda: mk.zoo.save_preset("not a model", "x"), TypeError, "`model` must be a keras.Model"),
    (lambda: mk.zoo.train("penguins_hard", epochs=0), ValueError, "`epochs` must be a positive integer"),
    (lambda: mk.zoo.train("nope"), ValueError, "Unknown zoo entry 'nope'"),
])
def test_zoo_argument_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_fresh_architecture_needs_an_entry_name(preset):
    with pytest.raises(ValueError, match="`pretrained=False` needs a zoo entry name"):
        mk.zoo.load(str(preset[0]), pretrained=False)
