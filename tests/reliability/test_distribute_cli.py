"""`mtmm zoo train NAME --distribute ENGINE` from the outside: a data-parallel entry on 2 replicas
(2 logical CPUs for TF MirroredStrategy, 2 host devices for JAX DataParallel) trains, verifies and
scores like the one-device entry; a wrong engine for the backend is one clean line, nothing written."""

from __future__ import annotations

import json
import os

import pytest

from reliability_helpers import assert_clean_cli_error, run_cli, run_python, tree_listing

TRAIN = r'''
import json, sys
engine, out = sys.argv[1], sys.argv[2]
import keras
if keras.backend.backend() == "tensorflow" and engine == "mirrored":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import mtmm_keras as mk
result = mk.zoo.train("penguins_hard", epochs=12, out_dir=out, verbose=0, distribute=None if engine == "none" else engine)
print("RESULT " + json.dumps(json.load(open(out + "/metadata.json"))["metrics"]))
'''


def _train(engine: str, out: str, backend: str) -> dict:
    env = {"KERAS_BACKEND": backend}
    if backend == "jax":
        env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    result = run_python(TRAIN.replace("sys.argv[1], sys.argv[2]", f"{engine!r}, {out!r}"), env_extra=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_engine_names_match_the_cli():
    import mtmm_keras as mk
    from mtmm_keras import cli

    assert cli.DISTRIBUTE_ENGINES == mk.distribute.ENGINES


@pytest.mark.slow
@pytest.mark.parametrize("backend,engine", [("tensorflow", "mirrored"), ("jax", "jax")])
def test_two_replica_entry_scores_like_one_device(tmp_path, backend, engine):
    one = _train("none", str(tmp_path / "one"), backend)
    two = _train(engine, str(tmp_path / "two"), backend)
    meta = json.loads((tmp_path / "two" / "metadata.json").read_text())
    assert meta["training"]["distribute"] == engine
    verified = run_cli("zoo", "verify", str(tmp_path / "two"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Different batch order (Keras's per-epoch pipeline vs the one-device fast fit), same recipe: close scores.
    assert two["species_accuracy"] >= 0.95 and one["species_accuracy"] >= 0.95
    assert abs(two["body_mass_rmse"] - one["body_mass_rmse"]) < 0.1


def test_wrong_engine_for_the_backend_is_one_clean_line(user_folder):
    before = tree_listing(user_folder)
    result = run_cli("zoo", "train", "penguins_hard", "--epochs", "1", "--out", str(user_folder / "entry"),
                     "--distribute", "jax", env_extra={"KERAS_BACKEND": "tensorflow"})
    assert_clean_cli_error(result, "distribute='jax'", "jax backend")
    assert tree_listing(user_folder) == before
    missing_config = run_cli("zoo", "train", "penguins_hard", "--epochs", "1", "--out", str(user_folder / "entry"),
                             "--distribute", "multi_worker", env_extra={"KERAS_BACKEND": "tensorflow", "TF_CONFIG": ""})
    assert_clean_cli_error(missing_config, "TF_CONFIG")
    assert tree_listing(user_folder) == before
