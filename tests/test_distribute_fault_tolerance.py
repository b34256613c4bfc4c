"""A 2-worker MultiWorkerMirroredStrategy fit killed mid-epoch and relaunched ends where an uninterrupted one ends.

The recipe a cluster manager follows (README, "Training on more than one device"): every worker runs
the same script with `keras.callbacks.BackupAndRestore` in its own folder under one backup root; when
a worker dies (here worker 1 SIGKILLs itself in the middle of epoch 2), the survivor blocks in its
next collective, so it is killed too, and both are relaunched (fresh ports here) with the same backup
root. Keras restores the weights, the optimizer state (Adam's moments and step) and the epoch from the
last end-of-epoch backup, and the killed epoch is rerun from its start. The final weights must equal
those of an uninterrupted 2-worker run (≤ 1e-6 relative). The model's fast in-memory fit steps aside
here (a strategy, and a BackupAndRestore callback), so each epoch sees Keras's own pipeline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks/ is a repo folder, not installed
from benchmarks import _local_processes as local_processes  # noqa: E402

_WORKER = r'''
import json, os, signal, sys
index, ports, backup_root, out, kill_at = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4], sys.argv[5]
index = int(index)
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, numpy as np
import mtmm_keras as mk

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = {"reg": x[:, :1] * 2.0 - x[:, 1:2], "cls": (x[:, 2] > 0).astype("int32")}

class KillMidEpoch(keras.callbacks.Callback):
    """SIGKILL this worker after batch `b` of epoch `e` (the first launch only)."""
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None
    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            print("KILLING", self.current, batch, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

keras.utils.set_random_seed(0)
with strategy.scope():
    tasks = [mk.Task("reg", 1), mk.Task("cls", 2, loss="sparse_categorical_crossentropy")]
    model = mk.builders.hard_sharing((6,), tasks, trunk_units=(8,), learning_rate=0.01)
    # one folder per worker: two processes must not write one file
    callbacks = [keras.callbacks.BackupAndRestore(os.path.join(backup_root, f"worker{index}"))]
    if kill_at != "none":
        callbacks.append(KillMidEpoch(*map(int, kill_at.split(":"))))
    history = model.fit(x, y, batch_size=16, epochs=4, shuffle=True, verbose=0, callbacks=callbacks)
np.savez(out, *model.get_weights())
print("EPOCHS_RUN", len(history.history["loss"]), flush=True)
'''

WORKERS = 2
KILL = "1:2"  # worker 1 dies after batch 2 of epoch 1 (0-based; 6 batches of 8 rows per worker in each epoch)


def _launch(backup_root: str, outs: list[str], kill_at: list[str]) -> list[subprocess.Popen]:
    """Start every worker of one run on fresh ports (the same command for each, as a launcher would)."""
    ports = ",".join(str(p) for p in local_processes.free_ports(WORKERS))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    return [subprocess.Popen([sys.executable, "-c", _WORKER, str(i), ports, backup_root, outs[i], kill_at[i]],
                             env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for i in range(WORKERS)]


def _finish(workers: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str, str]]:
    try:
        return [(w.wait(timeout=timeout), *w.communicate()) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()


@pytest.mark.slow
def test_two_workers_killed_mid_epoch_resume_to_the_uninterrupted_weights(tmp_path):
    outs = {name: [str(tmp_path / f"{name}{i}.npz") for i in range(WORKERS)] for name in ("full", "killed", "resumed")}
    full = _launch(str(tmp_path / "full_backup"), outs["full"], ["none"] * WORKERS)
    backup = str(tmp_path / "backup")
    killed = _launch(backup, outs["killed"], ["none", KILL])

    # 1. worker 1 SIGKILLs itself mid-epoch; worker 0 is left waiting in a collective: the "cluster manager"
    #    (this test) terminates it, as it would any job whose peer died.
    assert killed[1].wait(timeout=600) == -signal.SIGKILL, killed[1].communicate()[1][-3000:]
    assert "KILLING 1 2" in killed[1].communicate()[0]
    deadline = time.time() + 5
    while killed[0].poll() is None and time.time() < deadline:
        time.sleep(0.2)
    survivor = killed[0].poll()
    if survivor is None:
        killed[0].kill()
        killed[0].wait(timeout=60)
    else:  # the survivor may also notice its peer is gone and fail by itself; it must not have finished
        assert survivor != 0, "worker 0 finished a fit its peer never completed"
    assert not any(os.path.exists(p) for p in outs["killed"])
    # the last end-of-epoch backup (epoch 0) is there, one folder per worker
    for i in range(WORKERS):
        assert os.path.exists(os.path.join(backup, f"worker{i}", "latest.weights.h5"))

    # 2. relaunch both, same command, same backup root, new ports
    resumed = _finish(_launch(backup, outs["resumed"], ["none"] * WORKERS))
    for rc, stdout, stderr in resumed + _finish(full):
        assert rc == 0, stderr[-3000:]
    assert all("EPOCHS_RUN 3" in stdout for _, stdout, _ in resumed)  # epochs 1-3: the killed epoch reruns
    for i in range(WORKERS):  # a finished fit deletes its backup
        assert not os.path.exists(os.path.join(backup, f"worker{i}"))

    # 3. the same weights as the uninterrupted run, on every worker
    want = np.load(outs["full"][0])
    for i in range(WORKERS):
        got, reference = np.load(outs["resumed"][i]), np.load(outs["full"][i])
        for key in want.files:
            np.testing.assert_allclose(reference[key], want[key], rtol=0, atol=0, err_msg=f"full run, worker {i}")
            scale = max(float(np.max(np.abs(want[key]))), 1e-12)
            assert float(np.max(np.abs(got[key] - want[key]))) <= 1e-6 * scale, f"worker {i}, {key}"
    assert len(want.files) > 0
