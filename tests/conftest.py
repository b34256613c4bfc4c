import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Under CI=true a skip for a missing package or missing data fails (tests/ci_skips.py).
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(free_memory=False)  # gc.collect() took 0.2-0.8 s per test: minutes in all


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _freeze_survivors() -> None:
    """Collect the garbage once, then freeze what is left alive out of the cyclic garbage collector's reach, so
    later full collections (the TFLite converter forces two per flavour) skip it. Without this, a worker's full
    collections walked every object the imports and earlier files left alive: about a second each by the end of a
    run, 75 s per worker in the TensorFlow pass."""
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session):
    """Freeze what collection left alive (TensorFlow, JAX, torch, Keras and the test modules: about half a
    million objects, alive for the whole run anyway)."""
    _freeze_survivors()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a file's last test (its module fixtures torn down), freeze what outlives the file (Keras and
    TensorFlow caches, session fixtures)."""
    yield
    if nextitem is None or nextitem.module is not item.module:
        _freeze_survivors()


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs `-n`), build the zoo entries' datasets once in the controller
    before the workers start, so two workers never spend the same minutes building the same dataset. The
    longest build (av_digits: speech synthesis) runs in a second process beside the others."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", None):
        return
    import subprocess
    import sys

    import mtmm_keras as mk
    from mtmm_keras.data import registry as data_registry
    from mtmm_keras.zoo import registry as zoo_registry

    needed = []
    for dataset in sorted({zoo_registry.recipe(name)["data"] for name in zoo_registry.list()}):
        try:
            data_registry.builder_class(dataset).check_sources()
        except FileNotFoundError:
            continue  # the tests that need it skip and say why
        needed.append(dataset)
    beside = None
    if "av_digits" in needed:
        needed.remove("av_digits")
        beside = subprocess.Popen([sys.executable, "-c", "import mtmm_keras as mk; mk.data.prepare('av_digits')"])
    try:
        for dataset in needed:
            mk.data.prepare(dataset)
    except BaseException:
        if beside is not None:
            beside.kill()
        raise
    if beside is not None and beside.wait() != 0:
        raise pytest.UsageError("preparing the av_digits dataset failed (its error is printed above)")
