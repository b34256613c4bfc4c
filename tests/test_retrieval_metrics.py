"""Retrieval metrics: the blocked NumPy functions against a brute-force per-query reference (random data,
random group ids, exact ties), block size independence, memory without an n × n matrix, and the Keras
side: RecallAtK(query=, gallery=) during fit/evaluate of a joint-embedding model, the full-gallery
callback, and a compiled model that saves and reloads (with its metrics) in a new process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import tracemalloc

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras import retrieval


def brute_force(queries, gallery, query_ids, gallery_ids, ks=(1, 5, 10)):
    """The definitions, one query at a time: rank the whole gallery by score (descending; among equal
    scores the irrelevant items first), then read Recall@K, the first hit's rank and AP off that list."""
    scores = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    ranks, aps = [], []
    for i in range(len(queries)):
        relevant = np.asarray(gallery_ids) == query_ids[i]
        if not relevant.any():
            continue
        order = sorted(range(len(gallery)), key=lambda j: (-scores[i, j], bool(relevant[j])))
        hits = np.flatnonzero(relevant[order])
        ranks.append(hits[0] + 1)
        aps.append(np.mean([(m + 1) / (position + 1) for m, position in enumerate(hits)]))
    ranks = np.array(ranks)
    result = {f"recall_at_{k}": float((ranks <= k).mean()) for k in ks}
    result.update(median_rank=float(np.median(ranks)), map=float(np.mean(aps)))
    return result


def _data(rng, n_queries, n_gallery, groups, integer):
    queries = rng.normal(size=(n_queries, 6)).astype("float32")
    gallery = rng.normal(size=(n_gallery, 6)).astype("float32")
    if integer:  # small integers: exact dot products, so many exactly tied scores
        queries, gallery = np.round(queries), np.round(gallery)
    return queries, gallery, rng.integers(0, groups, n_queries), rng.integers(0, groups, n_gallery)


# 3 groups: ~40 relevant items per query (AP by sorting); 30 groups: ~4 (AP by counting); 500: most queries
# have no relevant item at all (left out) or one.
@pytest.mark.parametrize("groups", [3, 30, 500])
@pytest.mark.parametrize("integer", [False, True], ids=["float", "ties"])
def test_metrics_equal_the_brute_force_reference(rng, groups, integer):
    queries, gallery, query_ids, gallery_ids = _data(rng, 90, 120, groups, integer)
    expected = brute_force(queries, gallery, query_ids, gallery_ids)
    for block_size in (1, 7, 90, 4096):
        got = retrieval.retrieval_metrics(queries, gallery, query_ids, gallery_ids, block_size=block_size)
        assert got == pytest.approx(expected, abs=1e-12), block_size
    recall = mk.retrieval.retrieval_recall(queries, gallery, ks=(1, 5), query_ids=query_ids, gallery_ids=gallery_ids)
    assert recall == {k: expected[k] for k in ("recall_at_1", "recall_at_5")}


def test_without_ids_row_i_matches_row_i(rng):
    queries = rng.normal(size=(50, 4)).astype("float32")
    gallery = queries + 0.8 * rng.normal(size=(50, 4)).astype("float32")
    expected = brute_force(queries, gallery, np.arange(50), np.arange(50))
    assert retrieval.retrieval_metrics(queries, gallery, block_size=16) == pytest.approx(expected, abs=1e-12)
    ranks = retrieval.first_match_ranks(queries, gallery, block_size=3)
    assert np.median(ranks) == expected["median_rank"] and ranks.min() >= 1


def test_ties_count_against_the_query():
    query = np.array([[1.0, 0.0]], np.float32)
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0], [1.0, 0.0]], np.float32)  # three tied at the top
    # relevant: items 1 and 2 (group 7); items 0 and 3 tie with item 1 and are not relevant
    got = retrieval.retrieval_metrics(query, gallery, [7], [0, 7, 7, 3], ks=(1, 3))
    assert got["recall_at_1"] == 0.0 and got["recall_at_3"] == 1.0 and got["median_rank"] == 3.0
    assert got["map"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    # a tie between two relevant items does not cost anything
    assert retrieval.retrieval_metrics(query, gallery[:2], [7], [7, 7], ks=(1,))["map"] == 1.0


def test_queries_without_a_relevant_item_are_left_out():
    queries = np.eye(3, dtype=np.float32)
    got = retrieval.retrieval_metrics(queries, queries, [0, 1, 9], [0, 1, 2], ks=(1,))
    assert got == {"recall_at_1": 1.0, "median_rank": 1.0, "map": 1.0}
    assert list(retrieval.first_match_ranks(queries, queries, [0, 1, 9], [0, 1, 2])) == [1, 1, 0]


def test_cross_modal_metrics_name_both_directions(rng):
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    groups = rng.integers(0, 6, 40)
    got = mk.retrieval.cross_modal_metrics({"image": a, "audio": b}, groups, ks=(1, 5), block_size=8)
    for query, gallery, q, g in (("image", "audio", a, b), ("audio", "image", b, a)):
        expected = brute_force(q, g, groups, groups, ks=(1, 5))
        assert got[f"{query}_to_{gallery}_recall_at_1"] == pytest.approx(expected["recall_at_1"])
        assert got[f"{query}_to_{gallery}_recall_at_5"] == pytest.approx(expected["recall_at_5"])
        assert got[f"{query}_to_{gallery}_median_rank"] == expected["median_rank"]
        assert got[f"{query}_to_{gallery}_map"] == pytest.approx(expected["map"])
    assert len(got) == 8


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda: retrieval.retrieval_metrics(np.zeros((3, 2)), np.zeros((3, 2)), query_ids=[0, 1, 2]), ValueError,
         "both `query_ids` and `gallery_ids`"),
        (lambda: retrieval.retrieval_metrics(np.zeros((3, 2)), np.zeros((4, 2))), ValueError, "row-aligned"),
        (lambda: retrieval.retrieval_metrics(np.full((3, 2), np.nan), np.zeros((3, 2))), ValueError, "NaN or inf"),
        (lambda: retrieval.retrieval_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1, 2], [5, 6, 7]), ValueError,
         "No query has a relevant item"),
        (lambda: retrieval.retrieval_metrics(np.zeros((3, 2)), np.zeros((3, 2)), block_size=0), ValueError, "`block_size`"),
        (lambda: retrieval.retrieval_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1], [0, 1, 2]), ValueError,
         "one id per query"),
        (lambda: mk.metrics.RecallAtK(1, query="image"), ValueError, "both `query` and `gallery`"),
        (lambda: mk.metrics.RecallAtK(1, query="image", gallery="image"), ValueError, "two different modalities"),
    ],
)
def test_bad_arguments_are_refused(call, exc, fragment):
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_one_block_in_memory_at_a_time(rng):
    """6000 × 6000 float32 scores would be 144 MB; blocks of 256 queries hold 6 MB."""
    n = 6000
    queries = rng.normal(size=(n, 16)).astype("float32")
    gallery = queries + rng.normal(size=(n, 16)).astype("float32")
    ids = rng.integers(0, 2000, n)
    tracemalloc.start()
    try:
        retrieval.retrieval_metrics(queries, gallery, ids, ids, block_size=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="NumPy only: the same on every backend")
def test_a_50k_gallery_fits_in_memory(rng):
    """50k × 50k float32 scores would be 10 GB; 1024-query blocks hold 205 MB. (~10 s on a quiet 2-core CPU.)"""
    n = 50_000
    queries = rng.normal(size=(n, 32)).astype("float32")
    gallery = queries + 0.5 * rng.normal(size=(n, 32)).astype("float32")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = retrieval.retrieval_metrics(queries, gallery, block_size=1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 600e6, f"peak {peak / 1e6:.0f} MB"
    assert 0.5 < result["recall_at_1"] < 1.0 and result["map"] >= result["recall_at_1"]
    print(f"50k gallery, dim 32: {time.perf_counter() - start:.1f} s, peak {peak / 1e6:.0f} MB, {result}")


# ---- Keras -------------------------------------------------------------------------------------------

def _model(metrics=()):
    encoders = {"image": mk.encoders.tabular(6, hidden_units=(8,), input_name="image", name="image_enc"),
                "audio": mk.encoders.tabular(5, hidden_units=(8,), input_name="audio", name="audio_enc")}
    model = mk.builders.joint_embedding(encoders, embedding_dim=8, compile=False)
    model.compile(optimizer="adam", loss=mk.losses.get("max_margin"), metrics=list(metrics))
    return model


def _xy(rng, n=48, groups=6):
    x = {"image": rng.normal(size=(n, 6)).astype("float32"), "audio": rng.normal(size=(n, 5)).astype("float32")}
    return x, rng.integers(0, groups, n)


def _both_directions(k=1):
    return [mk.metrics.RecallAtK(k, query="image", gallery="audio"), mk.metrics.RecallAtK(k, query="audio", gallery="image")]


def test_recall_at_k_config_round_trip():
    metric = mk.metrics.RecallAtK(5, query="image", gallery="audio")
    assert metric.name == "in_batch_image_to_audio_recall_at_5"
    config = metric.get_config()
    assert config == {"k": 5, "query": "image", "gallery": "audio", "name": "in_batch_image_to_audio_recall_at_5", "dtype": "float32"}
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(clone) is mk.metrics.RecallAtK and clone.get_config() == config
    legacy = mk.metrics.RecallAtK.from_config({"k": 2, "name": "recall_at_2", "dtype": "float32"})  # older config
    assert legacy.query is None and legacy.name == "recall_at_2"


def test_similarity_matrix_mode_still_works(rng):
    """Without query/gallery: `y_pred` is a [B, B] similarity matrix and `y_true` the group ids."""
    scores = rng.normal(size=(20, 20)).astype("float32")
    ids = rng.integers(0, 5, 20)
    metric = mk.metrics.RecallAtK(3)
    metric.update_state(ids, scores)
    ranks = [1 + ((scores[i] >= scores[i][ids == ids[i]].max()) & (ids != ids[i])).sum() for i in range(20)]
    assert float(metric.result()) == pytest.approx(np.mean(np.array(ranks) <= 3))


def test_in_batch_recall_over_one_whole_batch_equals_the_full_gallery_numbers(rng):
    model = _model(_both_directions(1) + _both_directions(5))
    x, y = _xy(rng)
    logs = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    embeddings = model.predict(x, verbose=0)
    expected = mk.retrieval.cross_modal_metrics(embeddings, y, ks=(1, 5))
    for k in (1, 5):
        for a, b in (("image", "audio"), ("audio", "image")):
            assert logs[f"in_batch_{a}_to_{b}_recall_at_{k}"] == pytest.approx(expected[f"{a}_to_{b}_recall_at_{k}"], abs=1e-6)
    # without y every row is its own group
    no_groups = model.evaluate(x, batch_size=len(y), verbose=0, return_dict=True)
    expected = mk.retrieval.cross_modal_metrics(embeddings, None, ks=(1,))
    assert no_groups["in_batch_image_to_audio_recall_at_1"] == pytest.approx(expected["image_to_audio_recall_at_1"], abs=1e-6)


def test_metrics_and_full_gallery_callback_during_fit(rng):
    model = _model(_both_directions(1))
    x, y = _xy(rng)
    callback = mk.retrieval.RetrievalEvaluation(x, y, ks=(1, 5), block_size=16)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y), callbacks=[callback]).history
    for name in ("in_batch_image_to_audio_recall_at_1", "in_batch_audio_to_image_recall_at_1",
                 "val_in_batch_image_to_audio_recall_at_1", "val_in_batch_audio_to_image_recall_at_1"):
        assert len(history[name]) == 2 and all(0.0 <= v <= 1.0 for v in history[name]), name
    # the callback's numbers are the full-gallery numbers of the model at that epoch end (here: the last)
    expected = mk.retrieval.cross_modal_metrics(model.predict(x, verbose=0), y, ks=(1, 5))
    assert len(expected) == 8
    for key, value in expected.items():
        assert len(history[f"val_{key}"]) == 2
        assert history[f"val_{key}"][-1] == pytest.approx(value), key
    # validation in-batch recall over 16-row batches is not the full-gallery number: both are there, distinct names
    assert "val_image_to_audio_recall_at_1" in history and "val_in_batch_image_to_audio_recall_at_1" in history


def test_train_metric_is_the_recall_of_the_batch_it_trained_on(rng):
    """One batch per epoch, no shuffling: epoch 1's train metric is the recall of the initial weights."""
    model = _model(_both_directions(1))
    x, y = _xy(rng)
    expected = mk.retrieval.cross_modal_metrics(model.predict(x, verbose=0), y, ks=(1,))
    history = model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0).history
    assert history["in_batch_image_to_audio_recall_at_1"][0] == pytest.approx(expected["image_to_audio_recall_at_1"], abs=1e-6)
    assert history["in_batch_audio_to_image_recall_at_1"][0] == pytest.approx(expected["audio_to_image_recall_at_1"], abs=1e-6)


def test_a_metric_naming_a_missing_modality_says_so(rng):
    model = _model([mk.metrics.RecallAtK(1, query="image", gallery="text")])
    x, y = _xy(rng, n=8)
    with pytest.raises(ValueError, match="'text'.*must be keys of the model's output dict"):
        model.evaluate(x, y, verbose=0)


SAVE = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    import mtmm_keras as mk
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = {"image": rng.normal(size=(32, 6)).astype("float32"), "audio": rng.normal(size=(32, 5)).astype("float32")}
    y = rng.integers(0, 4, 32)
    enc = {"image": mk.encoders.tabular(6, hidden_units=(8,), input_name="image", name="image_enc"),
           "audio": mk.encoders.tabular(5, hidden_units=(8,), input_name="audio", name="audio_enc")}
    model = mk.builders.joint_embedding(enc, embedding_dim=8, metrics=[
        mk.metrics.RecallAtK(1, query="image", gallery="audio"), mk.metrics.RecallAtK(5, query="audio", gallery="image")])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(sys.argv[1])
    np.savez(sys.argv[2], image=x["image"], audio=x["audio"], y=y)
    print(__import__("json").dumps(model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)))
''')

LOAD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import keras
    import mtmm_keras
    model = keras.models.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    x = {"image": data["image"], "audio": data["audio"]}
    loaded = model.evaluate(x, data["y"], batch_size=16, verbose=0, return_dict=True)
    history = model.fit(x, data["y"], batch_size=16, epochs=1, verbose=0).history  # they also work in fit
    print(json.dumps({"loaded": loaded, "fit": {k: v[-1] for k, v in history.items()}}))
''')


def _run(code, *args):
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_compiled_model_with_retrieval_metrics_reloads_in_a_new_process(tmp_path):
    path, data = str(tmp_path / "joint.keras"), str(tmp_path / "data.npz")
    before = _run(SAVE, path, data)
    assert set(before) == {"loss", "in_batch_image_to_audio_recall_at_1", "in_batch_audio_to_image_recall_at_5"}
    after = _run(LOAD, path, data)
    assert after["loaded"] == pytest.approx(before, abs=1e-6)  # the metrics came back with the compile config
    assert set(after["fit"]) == set(before) and all(0.0 <= after["fit"][k] <= 1.0 for k in before if k != "loss")
