"""A model trained with a weighting method reloads in a new process (after only `import keras, mtmm_keras`,
safe mode) with the same method, arguments and state: uncertainty's learned log σ², DWA's loss history,
GradNorm's weights; training then continues from that state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reliability_helpers import run_python

SAVE = r'''
import json, sys
import numpy as np, keras
import mtmm_keras as mk

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 5)).astype("float32")
y = {"a": rng.normal(size=(64, 1)).astype("float32"), "b": rng.integers(0, 3, size=(64,))}
y["a"][::3] = np.nan  # missing labels on the way
tasks = [mk.Task("a", 1, weight=2.0), mk.Task("b", 3, loss="sparse_categorical_crossentropy", metrics=["accuracy"])]
state = {}
for method, kwargs in (("uncertainty", {"initial_log_variance": 0.5}), ("dwa", {"temperature": 3.0}),
                       ("gradnorm", {"alpha": 1.0})):
    model = mk.builders.hard_sharing((5,), tasks, trunk_units=(8,), weighting=mk.weighting.get(method, **kwargs))
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    model.save(f"{sys.argv[1]}/{method}.keras")
    state[method] = {
        "variables": {v.path: np.asarray(v).tolist() for v in model.weighting.variables},
        "losses": [history["a_loss"][-1], history["b_loss"][-1]],
        "predict": model.predict(x[:4], verbose=0)["b"].tolist(),
    }
json.dump(state, open(f"{sys.argv[1]}/state.json", "w"))
'''

LOAD = r'''
import json, sys
import keras, mtmm_keras
import numpy as np

folder = sys.argv[1]
saved = json.load(open(f"{folder}/state.json"))
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 5)).astype("float32")
y = {"a": rng.normal(size=(64, 1)).astype("float32"), "b": rng.integers(0, 3, size=(64,))}
y["a"][::3] = np.nan
out = {}
for method, state in saved.items():
    model = keras.saving.load_model(f"{folder}/{method}.keras")
    weighting = model.weighting
    variables = {v.path: np.asarray(v).tolist() for v in weighting.variables}
    np.testing.assert_allclose(model.predict(x[:4], verbose=0)["b"], state["predict"], rtol=1e-5)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    out[method] = {"class": type(weighting).__name__, "config": weighting.get_config(), "variables": variables,
                   "weights": [history["weight/a"][0], history["weight/b"][0]]}
print(json.dumps(out))
'''


@pytest.mark.slow
def test_weighting_state_survives_save_and_load_in_new_processes(tmp_path):
    save = run_python(f"import sys; sys.argv = ['save', {str(tmp_path)!r}]\n" + SAVE)
    assert save.returncode == 0, save.stderr[-3000:]
    load = run_python(f"import sys; sys.argv = ['load', {str(tmp_path)!r}]\n" + LOAD)
    assert load.returncode == 0, load.stderr[-3000:]
    got = json.loads(load.stdout.strip().splitlines()[-1])
    state = json.loads((tmp_path / "state.json").read_text())
    assert got["uncertainty"]["class"] == "Uncertainty" and got["uncertainty"]["config"]["initial_log_variance"] == 0.5
    assert got["dwa"]["class"] == "DWA" and got["dwa"]["config"]["temperature"] == 3.0
    assert got["gradnorm"]["class"] == "GradNorm" and got["gradnorm"]["config"]["alpha"] == 1.0
    for method in state:
        assert got[method]["variables"].keys() == state[method]["variables"].keys()
        for path, value in state[method]["variables"].items():
            np.testing.assert_allclose(got[method]["variables"][path], value, rtol=1e-6, err_msg=f"{method} {path}")
    sigma = state["uncertainty"]["variables"]
    (log_variance,) = [v for p, v in sigma.items() if "log_variance" in p]
    assert log_variance != pytest.approx([0.5, 0.5])  # learned before saving, and kept
    # DWA continues from the saved history: epoch 4's weights come from epochs 2 and 3's losses
    history = [v for p, v in state["dwa"]["variables"].items() if "loss_history" in p][0]
    ratios = np.array(history[1]) / np.array(history[0])
    expected = 2 * np.exp(ratios / 3.0) / np.exp(ratios / 3.0).sum() * np.array([2.0, 1.0])
    assert got["dwa"]["weights"] == pytest.approx(expected.tolist(), rel=1e-5)

