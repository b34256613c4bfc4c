"""Expert-based multi-task builders (mmoe, cgc, ple, cross_stitch) and their layers. Backend-neutral (TF, JAX)."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.layers import CrossStitch, DSelectKGate, Experts, MixExperts, SoftmaxGate

TASKS = [mk.Task("a", 1), mk.Task("c", 3, loss="sparse_categorical_crossentropy")]


def _relu(x):
    return np.maximum(x, 0.0)


def _toy(n=128, seed=0):
    """Two learnable tasks on 6 features: a regression and a 3-class label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    a = (x[:, :1] * 2.0 - x[:, 1:2]).astype("float32")
    c = np.digitize(x[:, 2] + x[:, 3], [-0.5, 0.5]).astype("int32")
    return x, {"a": a, "c": c}


# --- layers ---------------------------------------------------------------------------------


def test_experts_equal_a_loop_of_per_expert_dense_layers(rng):
    layer = Experts(3, (4, 5), activation="relu")
    x = rng.normal(size=(6, 7)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (6, 3, 5)
    k1, b1, k2, b2 = (keras.ops.convert_to_numpy(w) for w in (layer.kernels[0], layer.biases[0], layer.kernels[1], layer.biases[1]))
    assert k1.shape == (3, 7, 4) and k2.shape == (3, 4, 5)
    for e in range(3):  # expert e is Dense(4, relu) then Dense(5, relu) holding slice e of the stacked weights
        want = _relu(_relu(x @ k1[e] + b1[e]) @ k2[e] + b2[e])
        np.testing.assert_allclose(out[:, e], want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[:, 0], out[:, 1])  # the experts start different
    clone = Experts.from_config(layer.get_config())
    assert clone.units == (4, 5) and clone.num_experts == 3


def test_softmax_gate_is_a_distribution_and_mix_is_the_weighted_sum(rng):
    gate = SoftmaxGate(4, hidden_units=(3,))
    x = rng.normal(size=(5, 6)).astype("float32")
    w = keras.ops.convert_to_numpy(gate(x))
    assert w.shape == (5, 4) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    hk, hb, k, b = (keras.ops.convert_to_numpy(v) for v in (gate.hidden_kernels[0], gate.hidden_biases[0], gate.kernel, gate.bias))
    logits = _relu(x @ hk + hb) @ k + b
    np.testing.assert_allclose(w, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-5)
    experts = rng.normal(size=(5, 4, 2)).astype("float32")
    mixed = keras.ops.convert_to_numpy(MixExperts()([experts, w]))
    np.testing.assert_allclose(mixed, np.einsum("be,bed->bd", w, experts), rtol=1e-5, atol=1e-6)
    assert SoftmaxGate.from_config(gate.get_config()).get_config() == gate.get_config()


@pytest.mark.parametrize("num_experts", [3, 4])
def test_dselect_k_gate_is_a_distribution_and_selects_exactly(num_experts, rng):
    gate = DSelectKGate(num_experts, k=2, gamma=1.0)
    x = rng.normal(size=(16, 6)).astype("float32")
    w = keras.ops.convert_to_numpy(gate(x))
    assert w.shape == (16, num_experts) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    # selectors pushed past ±γ/2: selector 1 codes 1 (digits 1,0), selector 2 codes 2 (digits 0,1); α = (0.75, 0.25)
    gate.selector_kernel.assign(np.zeros(gate.selector_kernel.shape, "float32"))
    gate.selector_bias.assign(np.array([5.0, -5.0, -5.0, 5.0], "float32"))
    gate.mix_kernel.assign(np.zeros(gate.mix_kernel.shape, "float32"))
    gate.mix_bias.assign(np.log(np.array([0.75, 0.25], "float32")))
    want = np.zeros(num_experts, "float32")
    want[1], want[2] = 0.75, 0.25
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gate(x)), np.tile(want, (16, 1)), atol=1e-6)
    # code 3 (both digits on) does not exist with 3 experts: it folds onto expert 3 mod 3 = 0
    gate.selector_bias.assign(np.array([5.0, 5.0, 5.0, 5.0], "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gate(x))[:, 3 % num_experts], 1.0, atol=1e-6)
    # the smooth step: 0 below -γ/2, 1 above γ/2, ½ at 0
    s = keras.ops.convert_to_numpy(gate.smooth_step(keras.ops.convert_to_tensor([-1.0, -0.5, 0.0, 0.25, 0.5, 2.0])))
    np.testing.assert_allclose(s, [0.0, 0.0, 0.5, 0.84375, 1.0, 1.0], atol=1e-6)


def test_cross_stitch_starts_near_identity_and_mixes_towers(rng):
    layer = CrossStitch(3)
    x = rng.normal(size=(4, 3, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    alpha = keras.ops.convert_to_numpy(layer.alpha)
    np.testing.assert_allclose(alpha, [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(out, np.einsum("ij,bjd->bid", alpha, x), rtol=1e-5, atol=1e-6)
    assert keras.ops.convert_to_numpy(CrossStitch(1)(x[:, :1])).tolist() == x[:, :1].tolist()
    assert CrossStitch.from_config(layer.get_config()).self_weight == 0.9


# --- builders -------------------------------------------------------------------------------


def _build(kind, **kwargs):
    common = dict(expert_units=(8,), tower_units=(8,))
    if kind == "mmoe":
        return mk.builders.mmoe((6,), TASKS, num_experts=3, **common, **kwargs)
    if kind == "cgc":
        return mk.builders.cgc((6,), TASKS, shared_experts=2, task_experts=1, **common, **kwargs)
    if kind == "ple":
        return mk.builders.ple((6,), TASKS, num_levels=2, shared_experts=2, task_experts=1, **common, **kwargs)
    return mk.builders.cross_stitch((6,), TASKS, tower_units=(8, 8), **kwargs)


# expected gates per builder: {key: number of experts it weighs}
GATES = {
    "mmoe": {"a": 3, "c": 3},
    "cgc": {"a": 3, "c": 3},  # 1 own + 2 shared
    "ple": {"level1_a": 3, "level1_c": 3, "level1_shared": 4, "a": 3, "c": 3},  # shared gate: 2·1 own + 2 shared
}


@pytest.mark.parametrize("kind", ["mmoe", "cgc", "ple", "cross_stitch"])
def test_builder_outputs_learns_and_reads_out_its_gates(kind):
    x, y = _toy()
    model = _build(kind, learning_rate=0.01)
    assert isinstance(model, mk.models.MultiTaskModel) and model.name == kind
    assert {k: tuple(v.shape) for k, v in model.output.items()} == {"a": (None, 1), "c": (None, 3)}
    assert [t["name"] for t in model.task_configs] == ["a", "c"]
    losses = model.fit(x, y, epochs=8, batch_size=32, verbose=0, shuffle=False).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    if kind == "cross_stitch":
        stitches = mk.builders.stitch_weights(model)
        assert list(stitches) == ["stitch1", "stitch2"] and all(s.shape == (2, 2) for s in stitches.values())
        with pytest.raises(ValueError, match="no expert gates"):
            mk.builders.gate_model(model)
        return
    gates = mk.builders.gate_model(model).predict(x[:10], verbose=0)
    assert {k: v.shape for k, v in gates.items()} == {k: (10, e) for k, e in GATES[kind].items()}
    for key, weights in gates.items():
        assert np.all(weights >= 0), key
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5, err_msg=key)
    with pytest.raises(ValueError, match="no cross-stitch"):
        mk.builders.stitch_weights(model)


@pytest.mark.slow
def test_dselect_k_gates_in_mmoe_and_ple_learn():
    x, y = _toy()
    for model in (_build("mmoe", gate="dselect_k", gate_k=2, learning_rate=0.01),
                  _build("ple", gate="dselect_k", gate_k=1, learning_rate=0.01)):
        assert any(isinstance(layer, DSelectKGate) for layer in model.layers)
        losses = model.fit(x, y, epochs=6, batch_size=32, verbose=0, shuffle=False).history["loss"]
        assert losses[-1] < 0.8 * losses[0], (model.name, losses)
        for key, weights in mk.builders.gate_model(model).predict(x[:8], verbose=0).items():
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5, err_msg=key)


def test_cross_stitch_with_identity_stitches_equals_independent_towers():
    x, _ = _toy(16)
    model = mk.builders.cross_stitch((6,), TASKS, tower_units=(5, 4), compile=False)
    alpha = mk.builders.stitch_weights(model)["stitch1"]
    np.testing.assert_allclose(alpha, [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6)  # the documented start
    for name in ("stitch1", "stitch2"):
        model.get_layer(name).alpha.assign(np.eye(2, dtype="float32"))
    pred = model.predict(x, verbose=0)
    w = {layer.name: [keras.ops.convert_to_numpy(v) for v in layer.weights] for layer in model.layers if layer.weights}
    for t, task in enumerate(TASKS):  # tower t alone: its slice of each stacked level, then its head
        h = _relu(x @ w["towers_dense1"][0][t] + w["towers_dense1"][1][t])
        h = _relu(h @ w["towers_dense2"][0][t] + w["towers_dense2"][1][t])
        np.testing.assert_allclose(pred[task.name], h @ w[task.name][0] + w[task.name][1], rtol=1e-4, atol=1e-5)
    # and a non-identity stitch does mix them: task a's output then depends on tower c
    model.get_layer("stitch2").alpha.assign(np.array([[0.5, 0.5], [0.0, 1.0]], "float32"))
    assert not np.allclose(model.predict(x, verbose=0)["a"], pred["a"])
    np.testing.assert_allclose(model.predict(x, verbose=0)["c"], pred["c"], rtol=1e-5, atol=1e-6)


def test_encoder_input_and_single_task():
    encoder = mk.encoders.tabular(6, hidden_units=(4,))
    model = mk.builders.mmoe(encoder, [mk.Task("only", 2)], num_experts=2, expert_units=(4,), compile=False)
    assert model.output["only"].shape == (None, 2)
    assert mk.builders.cross_stitch((6,), [mk.Task("only", 1)], tower_units=(4,), compile=False).output["only"].shape == (None, 1)
    assert set(mk.builders.gate_model(mk.builders.ple((6,), [mk.Task("only", 1)], expert_units=(4,), compile=False)).output) == {
        "level1_only", "level1_shared", "only"}


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: mk.builders.mmoe((6,), TASKS, num_experts=0), "num_experts"),
        (lambda: mk.builders.mmoe((6,), TASKS, expert_units=(8, 0)), "expert_units[1]"),
        (lambda: mk.builders.mmoe((6,), TASKS, expert_units=()), "expert_units"),
        (lambda: mk.builders.mmoe((6,), TASKS, tower_units=(-1,)), "tower_units[0]"),
        (lambda: mk.builders.mmoe((6,), TASKS, gate_units=(0,)), "gate_units[0]"),
        (lambda: mk.builders.mmoe((6,), TASKS, gate="top1"), "gate"),
        (lambda: mk.builders.mmoe((6,), TASKS, num_experts=2, gate="dselect_k", gate_k=3), "gate_k"),
        (lambda: mk.builders.mmoe((6,), TASKS, dropout=1.0), "dropout"),
        (lambda: mk.builders.ple((6,), TASKS, num_levels=0), "num_levels"),
        (lambda: mk.builders.ple((6,), TASKS, shared_experts=0), "shared_experts"),
        (lambda: mk.builders.cgc((6,), TASKS, task_experts=0), "task_experts"),
        (lambda: mk.builders.ple((6,), [mk.Task("shared", 1)]), "tasks"),
        (lambda: mk.builders.cross_stitch((6,), TASKS, tower_units=()), "tower_units"),
        (lambda: mk.builders.cross_stitch((6,), TASKS, self_weight=1.5), "self_weight"),
        (lambda: mk.builders.cross_stitch((6,), TASKS, activation="nope"), "activation"),
        (lambda: Experts(0, (4,)), "num_experts"),
        (lambda: CrossStitch(2)(np.zeros((1, 3, 4), "float32")), "num_towers"),
    ],
)
def test_argument_errors_name_the_argument(call, argument):
    with pytest.raises(ValueError) as err:
        call()
    assert argument in str(err.value)


# --- zoo gates plot -------------------------------------------------------------------------


def test_zoo_gates_plot_only_for_gated_models(tmp_path):
    pytest.importorskip("matplotlib")
    from mtmm_keras.zoo import plotting, training

    x, _ = _toy(32)
    gated = _build("cgc", compile=False)
    means = training.gate_means(gated, {"features": x})
    assert set(means) == {"a", "c"} and all(m.shape == (3,) for m in means.values())
    np.testing.assert_allclose([m.sum() for m in means.values()], 1.0, rtol=1e-5)
    plotting.plot_gates(means, str(tmp_path / training.GATES_FILE), "cgc")
    assert (tmp_path / training.GATES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert training.gate_means(mk.builders.hard_sharing((6,), TASKS, trunk_units=(4,), compile=False), {"features": x}) == {}
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_gates({}, str(tmp_path / "none.png"), "none")


@pytest.mark.parametrize("kind, weighting", [("ple", "pcgrad"), ("cross_stitch", "uncertainty")])
def test_builders_take_a_weighting_method(kind, weighting):
    x, y = _toy(64)
    model = _build(kind, weighting=weighting, learning_rate=0.01)
    assert model.weighting.method_name == weighting
    if kind == "ple":  # what feeds both tasks (through the shared gate) is what the method aggregates over
        shared = {v.path.split("/")[0] for v in model.shared_variables()}
        assert {"level1_a_experts", "level1_shared_experts", "level1_gate_shared", "level2_shared_experts"} <= shared
        assert not {"level1_gate_a", "level2_a_experts", "gate_a", "a_tower_dense1", "a", "c"} & shared
    losses = model.fit(x, y, epochs=4, batch_size=32, verbose=0, shuffle=False).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
