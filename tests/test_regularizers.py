import keras
import numpy as np
import pytest

import mtmm_keras as mk


def _omega(towers):
    """The spec's Ω = Σ_t Σ_k ‖θ_t − θ_k‖², written as the literal double sum."""
    return sum(np.sum((a - b) ** 2) for a in towers for b in towers)


def test_parameter_distance_matches_double_sum(rng):
    w = rng.normal(size=(4, 6, 3)).astype("float32")
    reg = mk.regularizers.ParameterDistance(alpha=0.3)
    got = float(keras.ops.convert_to_numpy(reg(keras.ops.convert_to_tensor(w))))
    assert got == pytest.approx(0.3 * _omega(list(w)), rel=1e-5)


def test_soft_sharing_penalty_on_real_weights(rng):
    tasks = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)]
    model = mk.builders.soft_sharing((10,), tasks, tower_units=(8, 4), alpha=0.01)
    model.fit(rng.normal(size=(32, 10)), {"a": rng.normal(size=(32, 1)), "b": rng.normal(size=(32, 1)), "c": rng.normal(size=(32, 2))}, epochs=1, verbose=0)
    # θ_t = every stacked tower weight of tower t, flattened and concatenated
    stacked = [keras.ops.convert_to_numpy(w) for w in model.weights if "towers_dense" in w.path]
    assert len(stacked) == 4  # 2 levels × (kernel, bias)
    towers = [np.concatenate([w[t].ravel() for w in stacked]) for t in range(3)]
    penalty = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert penalty == pytest.approx(0.01 * _omega(towers), rel=1e-4)
    assert penalty > 0


def test_alpha_validation_and_config():
    with pytest.raises(ValueError, match="alpha"):
        mk.regularizers.ParameterDistance(-1.0)
    with pytest.raises(ValueError, match="alpha"):
        mk.builders.soft_sharing((4,), [mk.Task("a", 1)], alpha=-0.1)
    reg = mk.regularizers.ParameterDistance(0.25)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(reg))
    assert isinstance(clone, mk.regularizers.ParameterDistance) and clone.alpha == 0.25
    with pytest.raises(ValueError, match="tower axis"):
        reg(keras.ops.ones((5,)))
