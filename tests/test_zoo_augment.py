"""Zoo recipes' `augment` field: random image shifts in the training pipeline (zoo/training.py), checked,
deterministic with the recipe seed, moving the images only (labels and validation rows untouched)."""

import copy

import numpy as np
import pytest

from mtmm_keras.zoo import recipes, registry, training


def _image_recipe(shift=2, seed=0):
    recipe = copy.deepcopy(registry.recipe("multi_fashion_hard"))
    recipe["augment"] = {"shift": shift}
    recipe["fit"].update(seed=seed, batch_size=16, validation_split=0.25)
    return recipe


def _numbered_images(n=40, size=12):
    """Each image holds its row number (1..n) in a 6×6 block in the middle, zeros elsewhere: after a shift of
    up to 2 pixels the number is still at the centre, so every image can be matched to its row and label."""
    images = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        images[i, size // 2 - 3:size // 2 + 3, size // 2 - 3:size // 2 + 3] = i + 1
    return images, {"left": np.arange(n) + 1, "right": 100 + np.arange(n)}


def _epoch(dataset):
    batches = [dataset[i] for i in range(len(dataset))]
    dataset.on_epoch_end()
    return batches


@pytest.mark.parametrize("augment, message", [
    ({"shift": 1, "flip": True}, r"recipe `augment`: unknown key\(s\) \['flip'\]; valid: \['shift'\]\."),
    ({"rotate": 5}, r"unknown key\(s\) \['rotate'\]; valid: \['shift'\]"),
    ({"shift": -1}, r"recipe `augment.shift` must be an integer from 0 to 8 \(pixels\), got -1\."),
    ({"shift": 9}, r"must be an integer from 0 to 8 \(pixels\), got 9\."),
    ({"shift": 1.5}, r"must be an integer from 0 to 8 \(pixels\), got 1\.5\."),
    ({"shift": True}, r"must be an integer from 0 to 8 \(pixels\), got True\."),
    ({"shift": "2"}, r"must be an integer from 0 to 8 \(pixels\), got '2'\."),
    ([1], r"recipe `augment` must be an object such as \{\"shift\": 2\}, got \[1\]\."),
])
def test_invalid_augment_is_refused_naming_the_valid_keys(augment, message):
    recipe = _image_recipe()
    recipe["augment"] = augment
    with pytest.raises(ValueError, match=message):
        training.augment_of(recipe)


def test_shift_needs_an_image_encoder():
    recipe = copy.deepcopy(registry.recipe("penguins_hard"))
    recipe["augment"] = {"shift": 1}
    with pytest.raises(ValueError, match=r"`augment.shift` moves images, but the recipe has no encoder of kind 'image'"):
        training.augment_of(recipe)
    recipe["augment"] = {"shift": 0}  # moving nothing needs no image
    assert training.augment_of(recipe) == {"shift": 0}
    assert training.augment_of(registry.recipe("penguins_hard")) == {}


def test_train_refuses_a_bad_augment_before_loading_any_data(monkeypatch):
    recipe = _image_recipe()
    recipe["augment"] = {"shfit": 1}
    monkeypatch.setattr(registry, "recipe", lambda name: recipe)
    monkeypatch.setattr(training.evaluation, "split_arrays", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['shfit'\]; valid: \['shift'\]"):
        training.train("multi_fashion_hard", out_dir="/nonexistent/never/written")


def test_shift_images_moves_each_image_by_its_own_offset_filling_zeros():
    images = np.arange(1, 2 * 5 * 5 + 1, dtype=np.uint8).reshape(2, 5, 5, 1)
    out = training.shift_images(images, np.array([1, 0]), np.array([0, -2]))
    np.testing.assert_array_equal(out[0, 1:], images[0, :-1])  # down by one
    np.testing.assert_array_equal(out[0, 0], 0)
    np.testing.assert_array_equal(out[1, :, :-2], images[1, :, 2:])  # left by two
    np.testing.assert_array_equal(out[1, :, -2:], 0)
    assert out.dtype == images.dtype and out.shape == images.shape
    np.testing.assert_array_equal(training.shift_images(images, np.zeros(2, int), np.zeros(2, int)), images)


def test_batches_are_shifted_labels_untouched_and_every_row_seen_once_per_epoch():
    images, labels = _numbered_images()
    dataset = training.ShiftedBatches(images, labels, 16, _image_recipe(shift=2))
    offsets = set()
    for epoch in range(3):
        seen = []
        for x, y in _epoch(dataset):
            assert sorted(y) == ["left", "right"]
            for image, left, right in zip(x, y["left"], y["right"]):
                row = int(image[6, 6, 0]) - 1  # the centre still holds the row number after any shift ≤ 2
                assert left == row + 1 and right == 100 + row  # labels travel with their image, unchanged
                matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                           if np.array_equal(image, training.shift_images(images[row:row + 1], [dy], [dx])[0])]
                assert len(matches) == 1  # exactly one shift in [-2, 2]² gives this image
                offsets.add(matches[0])
                seen.append(row)
        assert sorted(seen) == list(range(40))
    assert len(offsets) > 10 and (0, 0) in offsets  # shifts are really drawn, over the whole range


def test_batches_repeat_with_the_seed_and_change_with_it_and_the_epoch():
    images, labels = _numbered_images()

    def run(seed):
        dataset = training.ShiftedBatches(images, labels, 16, _image_recipe(seed=seed))
        return [_epoch(dataset) for _ in range(2)]

    def same(a, b):
        return all(np.array_equal(xa, xb) and np.array_equal(ya["left"], yb["left"])
                   for (xa, ya), (xb, yb) in zip(a, b))

    first, again, other = run(0), run(0), run(1)
    assert all(same(a, b) for a, b in zip(first, again))
    assert not same(first[0], other[0])
    assert not same(first[0], first[1])  # a new order and new shifts each epoch
    dataset = training.ShiftedBatches(images, labels, 16, _image_recipe())
    np.testing.assert_array_equal(dataset[1][0], dataset[1][0])  # a batch is a function of (seed, epoch, index)


def test_fit_trains_on_shifted_rows_and_validates_on_the_last_rows_unshifted(monkeypatch):
    images, labels = _numbered_images(n=40, size=28)
    recipe = _image_recipe(shift=1)
    recipe["encoders"]["image"]["filters"] = [2]
    recipe["builder_kwargs"] = {"trunk_units": [4]}
    made = []
    original = training.ShiftedBatches

    class Spy(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "ShiftedBatches", Spy)
    labels = {"left": labels["left"] % 10, "right": labels["right"] % 10}
    weights = []
    for _ in range(2):
        model = recipes.build(recipe)
        history = training._fit(model, recipe, {"image": images}, labels, epochs=2, verbose=0)
        weights.append(model.get_weights())
    dataset = made[0]
    assert len(made) == 2 and dataset.rows == 30  # Keras's split: the last 25 % held out, never shifted
    np.testing.assert_array_equal(np.unique(dataset.inputs[:, 14, 14, 0]), np.arange(1, 31))
    assert dataset.epoch >= 2  # Keras asked for a new epoch (new order, new shifts) at least once per epoch
    assert len(history["val_loss"]) == 2 and len(history["loss"]) == 2
    for first, again in zip(*weights):  # retraining with the recipe seed repeats the run exactly
        np.testing.assert_array_equal(first, again)
