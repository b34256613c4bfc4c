import keras
import numpy as np
import pytest

import mtmm_keras as mk


def _np_max_margin(s, groups, margin, hardest=False, bidirectional=True):
    """Spec: Σ_(i,j)∈P Σ_(i,k)∈N max(0, s_ik − s_ij + δ), the positive of row i on the diagonal."""
    n = len(s)
    per_anchor = np.zeros(n)
    for i in range(n):
        row = [max(0.0, s[i, k] - s[i, i] + margin) for k in range(n) if groups[k] != groups[i]]
        per_anchor[i] += (max(row) if hardest else sum(row)) if row else 0.0
        if bidirectional:
            col = [max(0.0, s[k, i] - s[i, i] + margin) for k in range(n) if groups[k] != groups[i]]
            per_anchor[i] += (max(col) if hardest else sum(col)) if col else 0.0
    return per_anchor


@pytest.mark.parametrize("hardest", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_groups", [False, True])
def test_max_margin_matches_numpy(rng, hardest, bidirectional, with_groups):
    s = rng.uniform(-1, 1, size=(6, 6)).astype("float32")
    groups = np.array([0, 1, 1, 2, 3, 3]) if with_groups else np.arange(6)
    want = _np_max_margin(s, groups, 0.3, hardest, bidirectional)
    loss = mk.losses.MaxMarginRankingLoss(margin=0.3, hardest_negative=hardest, bidirectional=bidirectional, reduction="sum")
    assert float(loss(groups, s)) == pytest.approx(want.sum(), rel=1e-5)
    mean_loss = mk.losses.MaxMarginRankingLoss(margin=0.3, hardest_negative=hardest, bidirectional=bidirectional)
    assert float(mean_loss(groups, s)) == pytest.approx(want.mean(), rel=1e-5)


def test_cosine_embedding_matches_torch_semantics(rng):
    a = rng.normal(size=(8, 5)).astype("float32")
    b = rng.normal(size=(8, 5)).astype("float32")
    labels = np.array([1, -1, 1, -1, -1, 1, 1, -1], dtype="float32")
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    want = np.where(labels > 0, 1 - cos, np.maximum(0, cos - 0.1)).mean()  # torch reduction='mean'
    loss = mk.losses.CosineEmbeddingLoss(margin=0.1)
    assert float(loss(labels, np.stack([a, b], axis=1))) == pytest.approx(want, rel=1e-5)
    assert float(loss(labels, cos)) == pytest.approx(want, rel=1e-5)


def test_contrastive_matches_numpy(rng):
    s = rng.uniform(-1, 1, size=(5, 5)).astype("float32")
    t = 0.5
    logits = s / t
    row = -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(1))
    col = -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(0))
    loss = mk.losses.ContrastiveLoss(temperature=t)
    assert float(loss(np.arange(5), s)) == pytest.approx(((row + col) / 2).mean(), rel=1e-5)


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="margin"):
        mk.losses.MaxMarginRankingLoss(margin=-0.1)
    with pytest.raises(ValueError, match="margin"):
        mk.losses.CosineEmbeddingLoss(margin=2.0)
    with pytest.raises(ValueError, match="temperature"):
        mk.losses.ContrastiveLoss(temperature=0)
    with pytest.raises(ValueError, match="square"):
        mk.losses.MaxMarginRankingLoss()(np.arange(3), np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="one of"):
        mk.losses.get("triplet_of_doom")


@pytest.mark.parametrize(
    "loss",
    [
        mk.losses.MaxMarginRankingLoss(margin=0.4, hardest_negative=True, bidirectional=False),
        mk.losses.CosineEmbeddingLoss(margin=0.25),
        mk.losses.ContrastiveLoss(temperature=0.2),
    ],
)
def test_loss_configs_round_trip(loss):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_recall_metrics(rng):
    q = rng.normal(size=(20, 4)).astype("float32")
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    recall = mk.retrieval.retrieval_recall(q, q + 0.01, ks=(1, 5))
    assert recall == {"recall_at_1": 1.0, "recall_at_5": 1.0}
    shuffled = mk.retrieval.retrieval_recall(q, q[::-1].copy(), ks=(1,))
    assert shuffled["recall_at_1"] < 0.5
    metric = mk.metrics.RecallAtK(k=1)
    sim = np.eye(4, dtype="float32")
    sim[3, 0] = 2.0  # query 3 ranks candidate 0 first: a miss
    metric.update_state(np.arange(4), sim)
    assert float(metric.result()) == pytest.approx(0.75)


def test_functional_forms_defaults_are_the_documented_ones(rng):
    """mk.losses.max_margin_ranking and mk.losses.cosine_embedding called with their defaults: margin 0.2, every
    negative summed (not the hardest), both directions; cosine margin 0 (PyTorch's default)."""
    s = rng.uniform(-1, 1, size=(5, 5)).astype("float32")
    got = keras.ops.convert_to_numpy(mk.losses.max_margin_ranking(None, s))
    np.testing.assert_allclose(got, _np_max_margin(s, np.arange(5), 0.2), rtol=1e-5, atol=1e-6)
    cosine = np.array([0.9, -0.3, 0.4, 0.1], "float32")
    labels = np.array([1.0, -1.0, -1.0, 1.0], "float32")
    want = np.where(labels == 1, 1.0 - cosine, np.maximum(0.0, cosine))
    got = keras.ops.convert_to_numpy(mk.losses.cosine_embedding(labels, cosine))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
