"""JAX data parallelism over 2 processes (`jax.distributed` on 127.0.0.1, gloo collectives on CPU) trains
like one process on the same global batches (≤ 1e-5 relative, loss and weights).

Each process joins through `mk.distribute.jax_multi_process()` (coordinator, process count and id from
the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables), trains the
one-process reference locally (no distribution: only its own device), then builds and fits the same
initial weights inside `mk.distribute.training_scope("multi_worker")` on its share of every global batch
(`mk.distribute.process_local_rows`). Hard sharing and the joint embedding (max-margin: every anchor
ranked against the 63 other rows of the global batch, not the 31 of its process's half).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks/ is a repo folder, not installed
from benchmarks import _local_processes as local_processes  # noqa: E402
REL = 1e-5

_WORKER = r'''
import json, os
import keras, numpy as np
import mtmm_keras as mk

mk.distribute.jax_multi_process()   # first: before any JAX computation; settings from the environment
import jax

ROWS, BATCH, EPOCHS = 136, 64, 2    # 2 full global batches and a last one of 8 rows (4 per process)
rng = np.random.default_rng(0)
flat = rng.normal(size=(ROWS, 6)).astype("float32")
shared = rng.normal(size=(ROWS, 5)).astype("float32")
pair = {"a": shared + 0.3 * rng.normal(size=(ROWS, 5)).astype("float32"),
        "b": shared[:, ::-1] + 0.3 * rng.normal(size=(ROWS, 5)).astype("float32")}
DATA = {"hard_sharing": (flat, {"reg": flat[:, :1] * 2.0, "cls": (flat[:, 1] > 0).astype("int32")}),
        "joint_embedding": (pair, None)}

def build(case):
    if case == "hard_sharing":
        tasks = [mk.Task("reg", 1), mk.Task("cls", 2, loss="sparse_categorical_crossentropy")]
        return mk.builders.hard_sharing((6,), tasks, trunk_units=(8,), optimizer="sgd", learning_rate=0.1,
                                        steps_per_execution=1)
    encoders = {m: mk.encoders.tabular(5, (8,), input_name=m, name=f"{m}_encoder") for m in ("a", "b")}
    return mk.builders.joint_embedding(encoders, embedding_dim=4, loss="max_margin", optimizer="sgd",
                                       learning_rate=0.1, steps_per_execution=1)

class FirstStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 0 and not hasattr(self, "loss"):
            self.loss = float(logs["loss"])

def fit(model, x, y, batch_size):
    first = FirstStep()
    history = model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[first])
    return {"first": first.loss, "losses": history.history["loss"],
            "weights": [np.asarray(w).tolist() for w in model.get_weights()]}

out = {"processes": jax.process_count(), "index": jax.process_index(), "devices": len(jax.devices()),
       "local_devices": len(jax.local_devices())}
for case, (x, y) in DATA.items():
    keras.utils.set_random_seed(0)
    single = build(case)
    initial = single.get_weights()
    result = {"one": fit(single, x, y, BATCH)} if out["index"] == 0 else {}
    with mk.distribute.training_scope("multi_worker") as distribution:
        result["distribution"] = type(distribution).__name__
        model = build(case)
        model.set_weights(initial)
        local_x, local_batch = mk.distribute.process_local_rows(x, BATCH)
        local_y = None if y is None else mk.distribute.process_local_rows(y, BATCH)[0]
        result["local_rows"], result["local_batch"] = len(keras.tree.flatten(local_x)[0]), local_batch
        result["two"] = fit(model, local_x, local_y, local_batch)
    out[case] = result
print("RESULT" + json.dumps(out), flush=True)
'''


def _one_device_flags() -> str:
    """The caller's XLA_FLAGS (e.g. `make test`'s optimisation level) without a forced host device count."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                    if not f.startswith("--xla_force_host_platform_device_count"))


@pytest.fixture(scope="module")
def two_processes() -> list[dict]:
    pytest.importorskip("jax")
    port = local_processes.free_ports(1)[0]
    base = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
            "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2"}
    base["XLA_FLAGS"] = _one_device_flags()  # one CPU device per process
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER], env={**base, "JAX_PROCESS_ID": str(i)}, cwd=REPO,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    return local_processes.results(workers, timeout=600)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["hard_sharing", "joint_embedding"])
def test_two_jax_processes_train_like_one(two_processes, case):
    one = two_processes[0][case]["one"]
    assert [p["index"] for p in two_processes] == [0, 1]
    for process in two_processes:
        assert process["processes"] == 2 and process["devices"] == 2 and process["local_devices"] == 1
        result = process[case]
        assert result["distribution"] == "DataParallel"
        assert result["local_batch"] == 32 and result["local_rows"] == 68  # 32 + 32 + 4 of the 136 rows
        two = result["two"]
        assert two["first"] == pytest.approx(one["first"], rel=REL), "step-1 loss"
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=REL)
        worst = max(_rel(a, b) for a, b in zip(one["weights"], two["weights"]))
        assert worst <= REL, f"weights differ by {worst:.2e} relative"
    assert abs(one["losses"][1] - one["losses"][0]) > 1e-4  # training moved: equal weights are no accident


@pytest.mark.slow
def test_joint_embedding_ranks_against_the_global_batch(two_processes):
    # ~63 negatives per anchor (the global batch of 64), not ~31 (one process's half): margin sums near 0.2·63
    assert two_processes[0]["joint_embedding"]["one"]["first"] > 10.0


def test_process_local_rows_on_one_process_is_the_identity():
    import mtmm_keras as mk

    x = {"a": np.arange(10.0).reshape(5, 2)}
    local, batch = mk.distribute.process_local_rows(x, 4)
    assert local is x and batch == 4
    with pytest.raises(ValueError, match="batch_size"):
        mk.distribute.process_local_rows(x, 0)


def test_process_local_rows_cuts_every_global_batch(monkeypatch):
    """3 processes, 2 devices each: batch 12 → 4 rows per process; the last 8 rows lose 2 (8 → 6, 2 each)."""
    from mtmm_keras.distribute import jax_processes

    rows = np.arange(32)
    shares = []
    for index in range(3):
        monkeypatch.setattr(jax_processes, "_process_layout", lambda index=index: (3, index, 2))
        local, batch = jax_processes.process_local_rows({"x": rows, "y": [rows * 10]}, 12)
        assert batch == 4
        np.testing.assert_array_equal(local["y"][0], local["x"] * 10)
        shares.append(local["x"])
    np.testing.assert_array_equal(shares[0], [0, 1, 2, 3, 12, 13, 14, 15, 24, 25])
    np.testing.assert_array_equal(shares[1], [4, 5, 6, 7, 16, 17, 18, 19, 26, 27])
    np.testing.assert_array_equal(shares[2], [8, 9, 10, 11, 20, 21, 22, 23, 28, 29])
    with pytest.raises(ValueError, match="multiple of the 6 devices"):
        jax_processes.process_local_rows(rows, 8)
    with pytest.raises(ValueError, match="same number of rows"):
        jax_processes.process_local_rows({"x": rows, "y": rows[:5]}, 12)


# --- `mtmm zoo train --distribute multi_worker` on JAX: the same command in every process --------------

def _mtmm(*args: str, env: dict[str, str]) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "", **env}
    full["XLA_FLAGS"] = _one_device_flags()
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        if name not in env:
            full.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "mtmm_keras.cli", *args], env=full, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_zoo_train_multi_worker_on_two_jax_processes(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("tensorflow_datasets")
    out = str(tmp_path / "entry")
    settings = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{local_processes.free_ports(1)[0]}", "JAX_NUM_PROCESSES": "2"}
    runs = [_mtmm("zoo", "train", "penguins_hard", "--epochs", "30", "--distribute", "multi_worker", "--out", out,
                  env={**settings, "JAX_PROCESS_ID": str(i)}) for i in range(2)]
    try:
        done = [(*run.communicate(timeout=600), run.returncode) for run in runs]
        done = [(rc, stdout, stderr) for stdout, stderr, rc in done]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    for rc, stdout, stderr in done:
        assert rc == 0, stderr[-3000:]
    assert "the chief writes the entry" in done[1][1] and "wrote " in done[0][1]
    assert "data-parallel training: multi_worker (2 replicas/devices)" in done[0][1], done[0][1]
    meta = json.loads(open(os.path.join(out, "metadata.json")).read())
    assert meta["training"]["distribute"] == "multi_worker" and meta["training"]["backend"] == "jax"
    assert meta["metrics"]["species_accuracy"] >= 0.95
    verified = subprocess.run([sys.executable, "-m", "mtmm_keras.cli", "zoo", "verify", out], capture_output=True,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_zoo_train_multi_worker_on_jax_without_settings_is_one_clean_line(tmp_path):
    pytest.importorskip("jax")
    run = _mtmm("zoo", "train", "penguins_hard", "--epochs", "1", "--distribute", "multi_worker", "--out",
                str(tmp_path / "entry"), env={"JAX_NUM_PROCESSES": "2"})
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    assert "JAX_COORDINATOR_ADDRESS" in stderr and "JAX_PROCESS_ID" in stderr, stderr
    assert not os.path.exists(tmp_path / "entry")


def test_jax_multi_process_refuses_another_backend(monkeypatch):
    import keras

    import mtmm_keras as mk

    if keras.backend.backend() == "jax":
        pytest.skip("this process runs the jax backend: the test below checks its settings")
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="jax backend"):
        mk.distribute.jax_multi_process("127.0.0.1:1234", 2, 0)


# Run in a fresh KERAS_BACKEND=jax process, so `make test`'s TensorFlow run checks the JAX branch too (it used
# to run only under KERAS_BACKEND=jax, which no `make test` pass gave this file). Nothing joins a real
# coordinator: every call is refused before jax.distributed.initialize.
_BAD_SETTINGS = r"""
import os, re
for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    os.environ.pop(name, None)
import keras
import mtmm_keras as mk
from mtmm_keras.distribute import jax_processes

assert keras.backend.backend() == "jax", keras.backend.backend()
assert not jax_processes._initialized()

def refused(pattern, *args):
    try:
        mk.distribute.jax_multi_process(*args)
    except ValueError as error:
        assert re.search(pattern, str(error)), (pattern, str(error))
        return
    raise AssertionError(f"jax_multi_process{args} was accepted")

refused(r"process_id` must be in \[0, 1\]", "127.0.0.1:1234", 2, 2)
refused(r"coordinator` must be 'host:port'", "localhost", 2, 0)
refused(r"JAX_NUM_PROCESSES", "127.0.0.1:1234", None, 0)
os.environ["JAX_PROCESS_ID"] = "one"
refused(r"JAX_PROCESS_ID must be an integer", "127.0.0.1:1234", 2)
assert not jax_processes._initialized()
print("CHECKED")
"""


def test_jax_multi_process_names_bad_settings():
    pytest.importorskip("jax")
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", _BAD_SETTINGS], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "CHECKED" in done.stdout, done.stderr[-3000:]
