"""Contrastive losses against their references: CLIP / SigLIP against open_clip_torch 3.3 (values and
gradients), and CLIP / SigLIP / InfoNCE / max-margin against NumPy formulas with random group ids.

open_clip is a test-only dependency installed with `--no-deps` (its package `__init__` needs torchvision,
which cannot sit beside this torch): the test loads its `open_clip/loss.py` file on its own.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

import mtmm_keras as mk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a repo folder, not installed
from benchmarks import open_clip_reference  # noqa: E402

TOL = 1e-5


# --- open_clip's loss.py, loaded without running the open_clip package --------------------------------


@pytest.fixture(scope="module")
def open_clip_loss():
    """open_clip's loss.py loaded on its own (benchmarks/open_clip_reference.py: the same oracle the benchmark times)."""
    if open_clip_reference.open_clip_loss_file() is None:
        pytest.skip("open_clip_torch is not installed (CI installs it: `pip install --no-deps open_clip_torch==3.3.0`)")
    pytest.importorskip("torch", reason="torch (a test-only dependency) is not installed")
    assert importlib.metadata.version("open_clip_torch") == open_clip_reference.OPEN_CLIP_VERSION == "3.3.0"
    # the file must stand alone: nothing imported from its own package (which would run open_clip/__init__)
    assert open_clip_reference.standalone_problems(open_clip_reference.open_clip_loss_file()) == []
    return open_clip_reference.load_open_clip_losses()


def _torch_value_and_grads(loss_module, kind, a, b, scale, bias):
    import torch

    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    ts = torch.tensor(scale, dtype=torch.float32, requires_grad=True)
    tbias = None if bias is None else torch.tensor(bias, dtype=torch.float32, requires_grad=True)
    if kind == "clip":
        loss = loss_module.ClipLoss()(ta, tb, ts, tbias)
    else:
        loss = loss_module.SigLipLoss()(ta, tb, ts, tbias)
    wrt = [ta, tb, ts] + ([] if tbias is None else [tbias])
    grads = torch.autograd.grad(loss, wrt)
    return float(loss.detach()), [g.detach().numpy() for g in grads]


# --- gradients on the running Keras backend ------------------------------------------------------------


def _keras_value_and_grads(fn, *args):
    """fn(*tensors) -> scalar; its value and gradient with respect to every argument, on any backend."""
    args = [np.asarray(a, dtype="float32") for a in args]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        return float(value), [np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return float(value), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        return float(value.detach()), [g.detach().cpu().numpy() for g in torch.autograd.grad(value, tensors)]
    pytest.skip(f"no gradient helper for the {backend} backend")


def _embeddings(rng, n=8, d=5, normalize=True):
    a, b = rng.normal(size=(n, d)).astype("float32"), rng.normal(size=(n, d)).astype("float32")
    if normalize:
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    return a, b


# --- parity with open_clip ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "clip_bias", "siglip", "siglip_init"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_open_clip_values_and_gradients(open_clip_loss, rng, kind, normalize):
    a, b = _embeddings(rng, normalize=normalize)
    scale, bias = {"clip": (14.3, None), "clip_bias": (7.5, -1.3), "siglip": (12.0, -4.0),
                   "siglip_init": (10.0, -10.0)}[kind]
    if not normalize:
        scale = scale / 4.0  # raw dot products are larger: keep the logits in a realistic range
    loss = mk.losses.CLIPLoss() if kind.startswith("clip") else mk.losses.SigLIPLoss()
    ids = np.arange(len(a))

    def keras_loss(ea, eb, s, *maybe_bias):
        pred = {"similarity": ops.matmul(ea, ops.transpose(eb)), "logit_scale": s}
        if maybe_bias:
            pred["logit_bias"] = maybe_bias[0]
        return loss(ids, pred)

    args = [a, b, np.float32(scale)] + ([] if bias is None else [np.float32(bias)])
    got, got_grads = _keras_value_and_grads(keras_loss, *args)
    want, want_grads = _torch_value_and_grads(open_clip_loss, kind.split("_")[0], a, b, scale, bias)
    assert abs(got - want) <= TOL, (got, want)
    assert len(got_grads) == len(want_grads) == len(args)
    for name, g, w in zip(["E_a", "E_b", "logit_scale", "logit_bias"], got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL, err_msg=name)
        if not (kind == "clip_bias" and name == "logit_bias"):  # a softmax ignores a shared bias: its gradient is 0
            assert np.abs(w).max() > 1e-4, name  # a gradient that is there to compare


def test_learned_scale_gradient_matches_open_clip_through_exp(open_clip_loss, rng):
    """The model's weight is log(scale): d loss / d logit_scale = scale · d loss / d scale, as in open_clip's
    `logit_scale.exp()` — checked through the layer's own `scale()` on the running backend."""
    import torch

    a, b = _embeddings(rng)
    layer = mk.losses.LearnedTemperature(init_logit_scale=math.log(20.0))
    t = float(np.asarray(layer.logit_scale))
    loss = mk.losses.CLIPLoss()

    def keras_loss(log_scale):
        return loss(np.arange(8), {"similarity": a @ b.T, "logit_scale": ops.exp(log_scale)})

    got, (grad,) = _keras_value_and_grads(keras_loss, np.float32(t))
    np.testing.assert_allclose(float(layer.scale()), 20.0, rtol=1e-6)
    tt = torch.tensor(t, requires_grad=True)
    want = open_clip_loss.ClipLoss()(torch.tensor(a), torch.tensor(b), tt.exp())
    (want_grad,) = torch.autograd.grad(want, [tt])
    assert abs(got - float(want.detach())) <= TOL
    assert abs(float(grad) - float(want_grad)) <= TOL


# --- NumPy formulas with random group ids -------------------------------------------------------------


def _logsumexp(values):
    m = values.max()
    return m + math.log(np.exp(values - m).sum())


def _np_clip(s, groups, scale, bias=0.0):
    """Per anchor: ½ (CE over row i + CE over column i), candidates = i and every other group's items."""
    logits = scale * s.astype("float64") + bias
    n = len(s)
    out = np.zeros(n)
    for i in range(n):
        keep = [k for k in range(n) if k == i or groups[k] != groups[i]]
        out[i] = 0.5 * ((_logsumexp(logits[i, keep]) - logits[i, i]) + (_logsumexp(logits[keep, i]) - logits[i, i]))
    return out


def _np_siglip(s, groups, scale, bias):
    """Per anchor: ½ (row i + column i) of −log σ(z_ik · logit_ik), z = +1 within a group, −1 across."""
    logits = scale * s.astype("float64") + bias
    z = np.where(groups[:, None] == groups[None, :], 1.0, -1.0)
    pairs = np.log1p(np.exp(-z * logits))  # −log σ(x) = log(1 + e^−x)
    return 0.5 * (pairs.sum(1) + pairs.sum(0))


def _np_infonce(s, groups, temperature, bidirectional=True):
    return _np_clip(s, groups, 1.0 / temperature) if bidirectional else np.array([
        _logsumexp((s / temperature)[i, [k for k in range(len(s)) if k == i or groups[k] != groups[i]]]) - s[i, i] / temperature
        for i in range(len(s))])


def _np_max_margin(s, groups, margin, hardest, bidirectional):
    """Seed spec §3: Σ_(i,i)∈P Σ_(i,k)∈N max(0, s_ik − s_ii + δ); N = pairs across groups; VSE++ keeps the max."""
    n = len(s)
    out = np.zeros(n)
    for i in range(n):
        negatives = [k for k in range(n) if groups[k] != groups[i]]
        directions = [[s[i, k] - s[i, i] for k in negatives]]
        if bidirectional:
            directions.append([s[k, i] - s[i, i] for k in negatives])
        for diffs in directions:
            hinges = [max(0.0, d + margin) for d in diffs]
            out[i] += (max(hinges) if hardest else sum(hinges)) if hinges else 0.0
    return out


def _random_groups(rng, n):
    groups = rng.integers(0, 3, size=n)
    assert len(set(groups)) > 1 and len(set(groups)) < n  # shared groups and negatives both present
    return groups


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clip_and_siglip_match_numpy_with_random_groups(seed):
    rng = np.random.default_rng(seed)
    n = 7
    s = rng.uniform(-1, 1, size=(n, n)).astype("float32")
    groups = _random_groups(rng, n)
    weights = rng.uniform(0.1, 2.0, size=n).astype("float32")
    clip_pred = {"similarity": s, "logit_scale": 9.0}
    sig_pred = {"similarity": s, "logit_scale": 6.0, "logit_bias": -2.5}
    want_clip, want_sig = _np_clip(s, groups, 9.0), _np_siglip(s, groups, 6.0, -2.5)
    np.testing.assert_allclose(float(mk.losses.CLIPLoss()(groups, clip_pred)), want_clip.mean(), rtol=TOL)
    np.testing.assert_allclose(float(mk.losses.SigLIPLoss()(groups, sig_pred)), want_sig.mean(), rtol=TOL)
    # sample weights weight each anchor's share; the default reduction divides by the batch size
    np.testing.assert_allclose(float(mk.losses.CLIPLoss()(groups, clip_pred, sample_weight=weights)),
                               (weights * want_clip).sum() / n, rtol=TOL)
    np.testing.assert_allclose(float(mk.losses.SigLIPLoss(reduction="sum")(groups, sig_pred, sample_weight=weights)),
                               (weights * want_sig).sum(), rtol=TOL)
    # the pure functions give the per-anchor values
    np.testing.assert_allclose(np.asarray(mk.losses.clip_loss(groups, s, 9.0)), want_clip, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.asarray(mk.losses.siglip_loss(groups, s, 6.0, -2.5)), want_sig, rtol=TOL, atol=TOL)
    # groups matter: the same matrix without them scores differently
    assert abs(float(mk.losses.CLIPLoss()(np.arange(n), clip_pred)) - want_clip.mean()) > 1e-3


def test_plain_similarity_uses_the_initial_scale_and_bias(rng):
    s = rng.uniform(-1, 1, size=(5, 5)).astype("float32")
    ids = np.arange(5)
    np.testing.assert_allclose(float(mk.losses.CLIPLoss()(ids, s)), _np_clip(s, ids, 1 / 0.07).mean(), rtol=TOL)
    np.testing.assert_allclose(float(mk.losses.SigLIPLoss()(ids, s)), _np_siglip(s, ids, 10.0, -10.0).mean(), rtol=TOL)
    capped = mk.losses.CLIPLoss(init_logit_scale=math.log(50.0), max_logit_scale=20.0 * 3)
    np.testing.assert_allclose(float(capped(ids, s)), _np_clip(s, ids, 50.0).mean(), rtol=TOL)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_infonce_matches_numpy_with_random_groups(seed, bidirectional):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, size=(7, 7)).astype("float32")
    groups = _random_groups(rng, 7)
    want = _np_infonce(s, groups, 0.2, bidirectional)
    loss = mk.losses.ContrastiveLoss(temperature=0.2, bidirectional=bidirectional, reduction="sum")
    np.testing.assert_allclose(float(loss(groups, s)), want.sum(), rtol=TOL)
    np.testing.assert_allclose(np.asarray(mk.losses.contrastive(groups, s, 0.2, bidirectional)), want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("hardest", [False, True])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_max_margin_matches_spec_formula_with_random_groups(seed, hardest, bidirectional):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, size=(8, 8)).astype("float32")
    groups = _random_groups(rng, 8)
    want = _np_max_margin(s, groups, 0.25, hardest, bidirectional)
    assert want.sum() > 0
    loss = mk.losses.MaxMarginRankingLoss(margin=0.25, hardest_negative=hardest, bidirectional=bidirectional,
                                          reduction="sum")
    np.testing.assert_allclose(float(loss(groups, s)), want.sum(), rtol=TOL)
    np.testing.assert_allclose(np.asarray(mk.losses.max_margin_ranking(groups, s, 0.25, hardest, bidirectional)), want,
                               rtol=TOL, atol=TOL)
    if hardest:  # "hardest_negative" by name is the same loss
        by_name = mk.losses.get("hardest_negative")
        np.testing.assert_allclose(float(by_name(groups, s)), _np_max_margin(s, groups, 0.2, True, True).mean(), rtol=TOL)


def test_one_group_for_everything_leaves_no_negatives():
    s = np.random.default_rng(0).uniform(-1, 1, size=(4, 4)).astype("float32")
    same = np.zeros(4)
    assert float(mk.losses.MaxMarginRankingLoss()(same, s)) == 0.0
    assert float(mk.losses.CLIPLoss()(same, s)) == pytest.approx(0.0, abs=1e-6)  # only the positive is left
    np.testing.assert_allclose(float(mk.losses.SigLIPLoss()(same, s)), _np_siglip(s, same, 10.0, -10.0).mean(), rtol=TOL)


# --- names, configs, errors ---------------------------------------------------------------------------


def test_by_name_and_config_round_trip():
    assert isinstance(mk.losses.get("clip"), mk.losses.CLIPLoss)
    assert isinstance(mk.losses.get("SigLIP"), mk.losses.SigLIPLoss)
    assert {"clip", "siglip"} <= set(mk.losses.names())
    for loss in (mk.losses.CLIPLoss(init_logit_scale=1.0, max_logit_scale=None),
                 mk.losses.SigLIPLoss(init_logit_bias=-5.0, reduction="sum")):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    layer = mk.losses.LearnedTemperature(init_logit_scale=0.5, init_logit_bias=-1.0, max_logit_scale=30.0)
    clone = mk.losses.LearnedTemperature.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert [w.name for w in clone.weights] == ["logit_scale", "logit_bias"]
    assert float(np.asarray(clone.logit_bias)) == -1.0


def test_defaults_follow_the_papers():
    clip, sig = mk.losses.CLIPLoss(), mk.losses.SigLIPLoss()
    assert clip.init_logit_scale == pytest.approx(math.log(1 / 0.07)) and clip.max_logit_scale == 100.0
    assert sig.init_logit_scale == pytest.approx(math.log(10.0)) and sig.init_logit_bias == -10.0
    clip_layer, sig_layer = clip.make_temperature(), sig.make_temperature()
    assert [w.name for w in clip_layer.trainable_weights] == ["logit_scale"]
    assert [w.name for w in sig_layer.trainable_weights] == ["logit_scale", "logit_bias"]
    assert float(clip_layer.scale()) == pytest.approx(1 / 0.07, rel=1e-6)
    assert float(sig_layer.scale()) == pytest.approx(10.0, rel=1e-6)


def test_scale_is_capped_at_max_logit_scale():
    layer = mk.losses.LearnedTemperature(init_logit_scale=math.log(10.0))
    layer.logit_scale.assign(math.log(1000.0))
    assert float(layer.scale()) == pytest.approx(100.0, rel=1e-6)
    assert float(ops.convert_to_numpy(layer.logit_scale.constraint(layer.logit_scale))) == pytest.approx(math.log(100.0))
    uncapped = mk.losses.LearnedTemperature(init_logit_scale=math.log(10.0), max_logit_scale=None)
    uncapped.logit_scale.assign(math.log(1000.0))
    assert float(uncapped.scale()) == pytest.approx(1000.0, rel=1e-5)
    s = np.eye(3, dtype="float32")
    np.testing.assert_allclose(ops.convert_to_numpy(layer(s)), 100.0 * s, rtol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="max_logit_scale"):
        mk.losses.CLIPLoss(max_logit_scale=-1.0)
    with pytest.raises(ValueError, match="init_logit_scale"):
        mk.losses.CLIPLoss(init_logit_scale=math.log(200.0))  # above the cap of 100
    with pytest.raises(TypeError, match="init_logit_scale"):
        mk.losses.CLIPLoss(init_logit_scale="hot")
    with pytest.raises(ValueError, match="init_logit_bias"):
        mk.losses.SigLIPLoss(init_logit_bias=None)
    with pytest.raises(ValueError, match="init_logit_bias"):
        mk.losses.LearnedTemperature(init_logit_bias=float("nan"))
    with pytest.raises(ValueError, match="square"):
        mk.losses.CLIPLoss()(np.arange(3), np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="'similarity'"):
        mk.losses.SigLIPLoss()(np.arange(3), {"logits": np.zeros((3, 3), "float32")})
