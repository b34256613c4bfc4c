"""MultiWorkerMirroredStrategy over 127.0.0.1: two worker processes train every builder like one process.

One pair of worker processes does it all. Each creates the strategy first (collectives must be
configured before other TF ops); then, builder by builder (joint embedding, hard and soft sharing,
attention fusion, MMoE, PLE, cross-stitch; tiny widths, 128 rows, global batch 64, 2 epochs, SGD), the
chief trains a one-process reference (eagerly: faster than tracing 4 steps) and both workers train the
same initial weights under the two-worker strategy, built with the builders' own defaults inside the
scope. Last come the keras-team/keras#20585 canaries: a plain `keras.Model.fit` under the strategy, and
one with only the mixin's symbolic-build half, both of which still fail on the Keras versions
`mk.distribute.multiworker` works around. When a canary starts passing, that half of the workaround
is no longer needed (drop it from `MultiWorkerFitMixin`, and the canary).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks/ is a repo folder, not installed
from benchmarks import _local_processes as local_processes  # noqa: E402

_WORKER = r'''
import json, os, sys
index, ports = int(sys.argv[1]), sys.argv[2].split(",")
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, numpy as np
import mtmm_keras.distribute.multiworker  # noqa: F401  (mk.distribute.multiworker)
import mtmm_keras as mk

EPOCHS, ROWS, BATCH = 2, 128, 64
rng = np.random.default_rng(0)
shared = rng.normal(size=(ROWS, 5)).astype("float32")
pair = {"a": shared + 0.3 * rng.normal(size=(ROWS, 5)).astype("float32"),
        "b": shared[:, ::-1] + 0.3 * rng.normal(size=(ROWS, 5)).astype("float32")}
flat = rng.normal(size=(ROWS, 6)).astype("float32")
DATA = {  # (x, y) per builder: one regression and one classification task, or image-text pairs
    "joint_embedding": (pair, None),
}
FUSIONS = ("attention_fusion", "concat_fusion", "gated_fusion", "transformer_fusion")
for case in FUSIONS:
    DATA[case] = (pair, {"reg": pair["a"][:, :1] - pair["b"][:, 1:2], "cls": (pair["a"][:, 0] > 0).astype("int32")})
for case in ("hard_sharing", "soft_sharing", "mmoe", "ple", "cross_stitch"):
    DATA[case] = (flat, {"reg": flat[:, :1] * 2.0, "cls": (flat[:, 1] > 0).astype("int32")})

def build(case, **kwargs):
    """Tiny widths; builders' own defaults otherwise (inside the scope they pick the strategy's). Plain
    SGD: its step is linear in the gradient, so a gradient off by the replica count shows (Adam's first
    steps, g/sqrt(g²), would hide it), and its update traces in a fraction of Adam's time."""
    kwargs.setdefault("optimizer", "sgd")
    kwargs.setdefault("learning_rate", 0.1)
    tasks = [mk.Task("reg", 1), mk.Task("cls", 2, loss="sparse_categorical_crossentropy")]
    b = mk.builders
    if case == "joint_embedding" or case in FUSIONS:
        encoders = {m: mk.encoders.tabular(5, (8,), input_name=m, name=f"{m}_encoder") for m in ("a", "b")}
        if case == "joint_embedding":
            return b.joint_embedding(encoders, embedding_dim=4, **kwargs)
        mask = {} if case == "attention_fusion" else {"modality_mask": True}  # the mask input, filled with ones
        return getattr(b, case)(encoders, tasks, fusion_dim=8, **mask, **kwargs)
    if case == "hard_sharing":
        return b.hard_sharing((6,), tasks, trunk_units=(8,), **kwargs)
    if case == "soft_sharing":
        return b.soft_sharing((6,), tasks, tower_units=(8,), alpha=1e-2, **kwargs)
    if case == "mmoe":
        return b.mmoe((6,), tasks, num_experts=2, expert_units=(8,), tower_units=(4,), **kwargs)
    if case == "ple":
        return b.ple((6,), tasks, num_levels=2, shared_experts=1, task_experts=1, expert_units=(8,),
                     tower_units=(4,), **kwargs)
    return b.cross_stitch((6,), tasks, tower_units=(8, 4), **kwargs)

out = {"replicas": strategy.num_replicas_in_sync, "cases": {}}
for case in DATA:
    x, y = DATA[case]
    keras.utils.set_random_seed(0)
    # the one-process reference: the chief only (the other worker waits at the first collective),
    # eager (4 steps run faster than tracing them)
    single = build(case, steps_per_execution=1, jit_compile=False, run_eagerly=True)
    initial = single.get_weights()
    if index == 0:
        one = single.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0).history["loss"]
    try:
        with strategy.scope():
            model = build(case)
            model.set_weights(initial)
            two = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0).history["loss"]
        out["cases"][case] = {"two": two, "settings": [model.steps_per_execution, model.jit_compile],
                              "weights_two": [w.tolist() for w in model.get_weights()]}
        if index == 0:
            out["cases"][case].update(one=one, weights_one=[w.tolist() for w in single.get_weights()],
                                      moved=max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), initial)))
    except Exception as error:
        out["cases"][case] = {"error": f"{type(error).__name__}: {str(error)[:1500]}"}

with strategy.scope():  # keras-team/keras#20585 canary: stock Keras under the strategy
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    plain.compile("sgd", "mse", steps_per_execution=1)
try:
    plain.fit(shared[:, :4], shared[:, :1], batch_size=16, epochs=1, verbose=0)
    out["stock"] = "ok"
except Exception as error:
    out["stock"] = f"{type(error).__name__}: {str(error)[:200]}"

class BuildFixOnly(mk.distribute.multiworker.MultiWorkerFitMixin, keras.Model):
    def get_metrics_result(self):  # without the mixin's one-element logs
        return keras.Model.get_metrics_result(self)

with strategy.scope():  # the second half of the workaround: scalar logs under the multi-worker reduce
    inputs = keras.Input((4,))
    half = BuildFixOnly(inputs, keras.layers.Dense(1)(inputs))
    half.compile("sgd", "mse", steps_per_execution=1)
try:
    half.fit(shared[:, :4], shared[:, :1], batch_size=16, epochs=1, verbose=0)
    out["scalar_logs"] = "ok"
except Exception as error:
    out["scalar_logs"] = f"{type(error).__name__}: {str(error)[:200]}"
print("RESULT" + json.dumps(out), flush=True)
'''


@pytest.fixture(scope="module")
def two_workers() -> list[dict]:
    ports = ",".join(str(p) for p in local_processes.free_ports(2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(i), ports], env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    return local_processes.results(workers, timeout=600)


BUILDERS = ["joint_embedding", "hard_sharing", "soft_sharing", "attention_fusion", "concat_fusion", "gated_fusion",
            "transformer_fusion", "mmoe", "ple", "cross_stitch"]


@pytest.mark.slow
@pytest.mark.parametrize("case", BUILDERS)
def test_two_workers_train_each_builder_like_one_process(two_workers, case):
    reference = two_workers[0]["cases"][case]  # the chief also trained the one-process reference
    assert "error" not in reference, reference["error"]
    for out in two_workers:
        assert out["replicas"] == 2
        result = out["cases"][case]
        assert "error" not in result, result["error"]
        assert result["settings"] == [1, False]  # the builder's defaults in the scope: the strategy's settings
        np.testing.assert_allclose(result["two"], reference["one"], rtol=1e-5)
        assert reference["moved"] > 1e-3  # training did move the weights: equal weights are no accident
        for a, b in zip(reference["weights_one"], result["weights_two"]):
            a, b = np.asarray(a), np.asarray(b)
            assert np.max(np.abs(a - b)) <= 1e-5 * max(np.max(np.abs(a)), 1e-12), case


@pytest.mark.slow
def test_keras_20585_still_breaks_stock_fit(two_workers):
    """If this fails, Keras fixed keras-team/keras#20585: drop `mk.distribute.multiworker`."""
    for out in two_workers:
        assert out["stock"].startswith("ValueError") and "PerReplica" in out["stock"], out["stock"]
        # the scalar-log half (`MultiWorkerFitMixin.get_metrics_result`) is still needed too
        assert out["scalar_logs"].startswith("ValueError") and "reduction dimension 0" in out["scalar_logs"], \
            out["scalar_logs"]
