import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


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
    for dataset in needed:
        mk.data.prepare(dataset)
    if beside is not None and beside.wait() != 0:
        raise pytest.UsageError("preparing the av_digits dataset failed (its error is printed above)")
