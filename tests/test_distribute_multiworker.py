"""MultiWorkerMirroredStrategy over 127.0.0.1: two worker processes train like one process.

Each worker creates the strategy first (collectives must be configured before other TF ops), then
trains a one-process reference (no strategy) and the same model under the two-worker strategy, and
finally runs the keras-team/keras#20585 canaries: a plain `keras.Model.fit` under the strategy, and
one with only the mixin's symbolic-build half, both of which still fail on the Keras versions
`mk.distribute.multiworker` works around. When a canary starts passing, that half of the workaround
is no longer needed (drop it from `MultiWorkerFitMixin`, and the canary).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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

rng = np.random.default_rng(0)
shared = rng.normal(size=(128, 5)).astype("float32")
x = {"a": shared + 0.3 * rng.normal(size=(128, 5)).astype("float32"),
     "b": shared[:, ::-1] + 0.3 * rng.normal(size=(128, 5)).astype("float32")}

def build():
    encoders = {m: mk.encoders.tabular(5, (8,), input_name=m, name=f"{m}_encoder") for m in ("a", "b")}
    return mk.builders.joint_embedding(encoders, embed_dim=4, steps_per_execution=1)

keras.utils.set_random_seed(0)
single = build()
initial = single.get_weights()
one = single.fit(x, batch_size=64, epochs=2, shuffle=False, verbose=0).history["loss"]
with strategy.scope():
    model = build()
    model.set_weights(initial)
    two = model.fit(x, batch_size=64, epochs=2, shuffle=False, verbose=0).history["loss"]
out = {"replicas": strategy.num_replicas_in_sync, "one": one, "two": two,
       "weights_one": [w.tolist() for w in single.get_weights()], "weights_two": [w.tolist() for w in model.get_weights()]}

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


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def two_workers() -> list[dict]:
    ports = ",".join(str(p) for p in _free_ports(2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(i), ports], env=env, cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    results = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=600)
            lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
            assert worker.returncode == 0 and lines, f"worker failed (rc {worker.returncode}):\n{stderr[-4000:]}"
            results.append(json.loads(lines[-1][len("RESULT"):]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return results


@pytest.mark.slow
def test_two_workers_train_the_joint_embedding_like_one_process(two_workers):
    for out in two_workers:
        assert out["replicas"] == 2
        np.testing.assert_allclose(out["two"], out["one"], rtol=1e-5)
        for a, b in zip(out["weights_one"], out["weights_two"]):
            a, b = np.asarray(a), np.asarray(b)
            assert np.max(np.abs(a - b)) <= 1e-5 * max(np.max(np.abs(a)), 1e-12)


@pytest.mark.slow
def test_keras_20585_still_breaks_stock_fit(two_workers):
    """If this fails, Keras fixed keras-team/keras#20585: drop `mk.distribute.multiworker`."""
    for out in two_workers:
        assert out["stock"].startswith("ValueError") and "PerReplica" in out["stock"], out["stock"]
        # the scalar-log half (`MultiWorkerFitMixin.get_metrics_result`) is still needed too
        assert out["scalar_logs"].startswith("ValueError") and "reduction dimension 0" in out["scalar_logs"], \
            out["scalar_logs"]
