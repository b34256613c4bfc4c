"""A zoo recipe's `ensemble` (K seeds averaged) and `builder_kwargs.wide`: `mtmm zoo train` fits every member,
records them on the card, writes one preset that loads (checksums, safe mode) and evaluates to its card; a bad
`ensemble` is refused before any data is loaded; building leaves the caller's random state alone."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.zoo import evaluation, recipes, registry


@pytest.fixture
def ensemble_zoo(tmp_path, monkeypatch):
    """A zoo whose one entry is penguins_hard's recipe as a 2-seed ensemble with a linear wide path."""
    recipe = registry.recipe("penguins_hard")
    recipe["ensemble"] = 2
    recipe["builder_kwargs"]["wide"] = {"features": None}
    folder = tmp_path / "entries" / "penguins_pair"
    folder.mkdir(parents=True)
    (folder / registry.RECIPE_FILE).write_text(json.dumps(recipe))
    monkeypatch.setattr(registry, "ENTRIES_DIR", tmp_path / "entries")
    return recipe


@pytest.mark.slow
def test_zoo_train_fits_every_member_and_the_entry_reloads_to_its_card(ensemble_zoo, tmp_path):
    out = tmp_path / "trained"
    result = mk.zoo.train("penguins_pair", epochs=2, out_dir=str(out), verbose=0)
    members = result["training"]["ensemble"]
    assert members["members"] == 2 and members["member_seeds"] == [0, 1]
    assert len(members["member_final_train_loss"]) == 2
    assert members["member_final_train_loss"][0] != members["member_final_train_loss"][1]  # two seeds, two fits
    model = mk.zoo.load(str(out))
    names = [layer.name for layer in model.layers]
    assert "hard_sharing_ensemble_member_0" in names and "hard_sharing_ensemble_member_1" in names
    head = model.get_layer("hard_sharing_ensemble_member_0").get_layer("sex")
    assert isinstance(head, mk.layers.WideDeepHead)
    evaluated = mk.zoo.evaluate("penguins_pair", weights_dir=str(out))
    for key, value in result["metrics"].items():
        assert evaluated["measured"][key] == pytest.approx(value, abs=1e-5)
    card = (out / registry.CARD_FILE).read_text()
    assert "A seed ensemble of 2 models (seeds 0, 1)" in card


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "3"])
def test_a_bad_ensemble_size_is_refused_before_any_data_is_loaded(ensemble_zoo, tmp_path, monkeypatch, size):
    ensemble_zoo["ensemble"] = size
    (registry.ENTRIES_DIR / "penguins_pair" / registry.RECIPE_FILE).write_text(json.dumps(ensemble_zoo))
    monkeypatch.setattr(evaluation, "split_arrays", lambda *a, **k: pytest.fail("data loaded before the check"))
    message = f"recipe `ensemble` must be a positive integer (how many seeds are averaged), got {size!r}."
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        mk.zoo.train("penguins_pair", epochs=1, out_dir=str(tmp_path / "out"), verbose=0)
    assert not (tmp_path / "out").exists()


def test_an_ensemble_recipe_builds_members_from_consecutive_seeds_and_keeps_the_callers_seeds(ensemble_zoo):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    model = recipes.build(ensemble_zoo)
    assert (random.random(), np.random.random()) == expected
    first = model.get_layer("hard_sharing_ensemble_member_0")
    second = model.get_layer("hard_sharing_ensemble_member_1")
    single = recipes.build(recipes.member_recipe(ensemble_zoo, 1))
    np.testing.assert_array_equal(second.get_weights()[0], single.get_weights()[0])  # member k = the seed+k recipe
    assert not np.array_equal(first.get_weights()[0], second.get_weights()[0])
    x, _ = evaluation.split_arrays(ensemble_zoo, "test")
    out = model.predict(evaluation._model_inputs(model, x), verbose=0)
    parts = [m.predict(evaluation._model_inputs(m, x), verbose=0) for m in (first, second)]
    np.testing.assert_allclose(out["body_mass"], (parts[0]["body_mass"] + parts[1]["body_mass"]) / 2, atol=1e-5)


def test_a_joint_embedding_recipe_cannot_be_an_ensemble():
    recipe = registry.recipe("av_digits_clip")
    recipe["ensemble"] = 3
    with pytest.raises(ValueError, match=r"^recipe `ensemble`: a joint-embedding \(retrieval\) entry cannot average"):
        recipes.ensemble_size(recipe)


def test_the_gates_of_an_ensemble_entry_are_its_first_members():
    """`gates.png` of a seed ensemble plots its first member's gates (each member's experts are its own)."""
    from mtmm_keras.builders import readouts
    from mtmm_keras.zoo import training

    tasks = [mk.Task("a", 1, loss="mse"), mk.Task("b", 1, loss="mse")]
    members = [mk.builders.mmoe((4,), tasks, num_experts=3, compile=False) for _ in range(2)]
    x = {"features": np.random.default_rng(0).normal(size=(16, 4)).astype("float32")}
    first = readouts.mean_gate_weights(members[0], x["features"])
    gates = training.gate_means(mk.models.average_ensemble(members), x)
    assert sorted(gates) == ["a", "b"]
    for key, weights in first.items():
        np.testing.assert_allclose(gates[key], weights, atol=1e-6)
    assert training.gate_means(mk.models.average_ensemble(
        [mk.builders.hard_sharing((4,), tasks, compile=False) for _ in range(2)]), x) == {}


def test_a_one_modality_ablation_keeps_only_its_own_wide_paths():
    """The card's ablation (the recipe on the tabular input alone) of an entry with a wide title path builds."""
    recipe = registry.recipe("movies_mmoe")
    assert recipe["builder_kwargs"]["wide"] == {"title": 8192}
    tabular_only = recipes.build(recipe, modalities=["tabular"])
    assert [t.name.split(":")[0] for t in tabular_only.inputs] == ["tabular"]
    assert type(tabular_only.get_layer("action")).__name__ == "Dense"
    recipe["builder_kwargs"]["wide"] = {"title": 8192, "tabular": None}
    kept = recipes.build(recipe, modalities=["tabular"]).get_layer("action")
    assert isinstance(kept, mk.layers.WideDeepHead) and kept.wide_vocab_sizes == [None]
