"""Zoo: registry, checksum-verified loading, training writes a complete entry, shipped entries are sound."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.zoo import integrity, presets, recipes, registry

SHIPPED = registry.list()


@pytest.fixture
def temp_zoo(tmp_path, monkeypatch):
    """A zoo holding one entry (penguins recipe) with freshly initialised weights and their sha256."""
    entries = tmp_path / "entries"
    folder = entries / "tiny"
    folder.mkdir(parents=True)
    recipe_path = registry.ENTRIES_DIR / "penguins_hard" / registry.RECIPE_FILE
    model = recipes.build(registry.read_json(recipe_path))
    model.set_weights([w + 0.5 for w in model.get_weights()])  # "trained": unlike a fresh initialisation
    presets.write_preset(folder, model, {"name": "tiny", "metrics": {"species_accuracy": 0.5}}, "# tiny\n",
                         {registry.RECIPE_FILE: lambda path: shutil.copy(recipe_path, path)})
    monkeypatch.setattr(registry, "ENTRIES_DIR", entries)
    return folder, model


def test_list_and_info(temp_zoo):
    assert mk.zoo.list() == ["tiny"]
    info = mk.zoo.info("tiny")
    assert info["builder"] == "hard_sharing" and info["data"] == "penguins"
    assert info["tasks"] == ["species", "sex", "body_mass"] and info["pretrained"] is True
    assert info["sha256"][registry.WEIGHTS_FILE] == integrity.sha256(temp_zoo[0] / registry.WEIGHTS_FILE)
    with pytest.raises(ValueError, match="Unknown zoo entry 'nope'; available entries: tiny"):
        mk.zoo.info("nope")


def test_load_verifies_then_loads_the_weights(temp_zoo):
    _, saved = temp_zoo
    model = mk.zoo.load("tiny")
    for a, b in zip(model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.compiled and model.optimizer is not None
    fresh = mk.zoo.load("tiny", pretrained=False)
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in saved.get_weights()]
    assert not any(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved.get_weights()))


def test_corrupt_weights_are_refused_before_anything_is_built(temp_zoo, monkeypatch):
    folder, _ = temp_zoo
    data = bytearray((folder / registry.WEIGHTS_FILE).read_bytes())
    data[-100] ^= 0xFF
    (folder / registry.WEIGHTS_FILE).write_bytes(bytes(data))

    def must_not_build(*args, **kwargs):
        raise AssertionError("a model was built from unverified weights")

    monkeypatch.setattr(recipes, "build", must_not_build)
    monkeypatch.setattr(keras.saving, "deserialize_keras_object", must_not_build)
    with pytest.raises(ValueError, match="nothing was loaded: model.weights.h5: sha256 mismatch"):
        mk.zoo.load("tiny")


def test_missing_checksum_is_refused(temp_zoo):
    folder, _ = temp_zoo
    (folder / registry.METADATA_FILE).write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match="no metadata.json with a sha256 per file"):
        mk.zoo.load("tiny")


def test_zoo_list_cli_does_not_import_tensorflow():
    code = "import sys; from mtmm_keras.cli import main; main(['zoo', 'list']); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("False")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_entry_is_complete(name):
    folder = registry.entry_dir(name)
    info = mk.zoo.info(name)
    assert info["pretrained"], f"{name} has no weights or sha256"
    assert mk.zoo.verify(name) == {f: "ok" for f in sorted(os.listdir(folder)) if f != registry.METADATA_FILE}
    gated = info["builder"] in ("mmoe", "cgc", "ple")  # training also plots the expert gates
    assert sorted(info["sha256"]) == sorted([registry.CONFIG_FILE, registry.WEIGHTS_FILE, registry.CARD_FILE,
                                             registry.CURVES_FILE, registry.RECIPE_FILE] + (["gates.png"] if gated else []))
    if gated:
        assert (folder / "gates.png").stat().st_size > 1000
    assert info["size_bytes"] < (10 if registry.recipe(name).get("ensemble", 1) > 1 else 5) * 2**20
    card = (folder / registry.CARD_FILE).read_text()
    for key, value in info["metrics"].items():
        assert key in card and f"{value:.4f}" in card
    assert (folder / registry.CURVES_FILE).stat().st_size > 1000
    assert info["training"]["seconds"] > 0 and "CPU" in info["training"]["hardware"]


@pytest.mark.slow
def test_train_writes_a_loadable_entry_and_evaluate_reproduces_it(tmp_path):
    out = tmp_path / "penguins"
    result = mk.zoo.train("penguins_hard", epochs=3, out_dir=str(out), verbose=0)
    files = (registry.CONFIG_FILE, registry.WEIGHTS_FILE, registry.CARD_FILE, registry.CURVES_FILE, registry.RECIPE_FILE)
    assert sorted(os.listdir(out)) == sorted(files + (registry.METADATA_FILE,))
    for name in files:
        assert result["sha256"][name] == integrity.sha256(out / name)
    assert [row["key"] for row in result["simple_baselines"]["headline"]] == ["species_accuracy", "sex_accuracy", "body_mass_rmse"]
    assert result["robustness"]["not_applicable"] == ["tabular"]  # train records both tables (issue 22)
    evaluated = mk.zoo.evaluate("penguins_hard", weights_dir=str(out))
    for key, value in result["metrics"].items():
        assert evaluated["measured"][key] == pytest.approx(value, abs=1e-5)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left behind
