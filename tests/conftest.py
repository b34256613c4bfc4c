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


# The longest files first, longest to shortest (each file's seconds summed over its tests in `make test` of 2026-12-07:
# the TensorFlow pass, or the JAX pass where that was longer), so the last minutes of a pytest-xdist run are not one
# worker alone on a long file while the others idle. The Makefile passes --no-loadscope-reorder: xdist's default
# reorders files by their number of tests, which put the few-test slow files (the installed wheel, the zoo exports)
# last. In a schedule replayed from those durations this order ends the TensorFlow pass at 923 s instead of 985 s and
# the JAX pass at 202 s instead of 228 s.
SLOW_FILES_FIRST = (
    "tests/test_docs.py", "tests/test_zoo_export.py", "tests/test_distribute.py", "tests/test_installed_wheel.py",
    "tests/reliability/test_distribute_cli.py", "tests/reliability/test_export_outside.py", "tests/test_export.py",
    "tests/reliability/test_zoo_outside.py", "tests/reliability/test_reload_new_process.py",
    "tests/test_builder_api.py", "tests/test_export_experts.py", "tests/test_in_memory_fit.py",
    "tests/test_export_fusion.py", "tests/test_distribute_jax_multiprocess.py",
    "tests/test_distribute_multiworker.py", "tests/test_fusion_builders.py", "tests/test_joint_embedding_clip.py",
    "tests/test_export_targets_masking.py", "tests/test_weighting_fit.py", "tests/test_benchmarks_harness.py",
    "tests/test_export_targets_cli_zoo.py", "tests/test_export_any_model.py", "tests/test_expert_builders.py",
    "tests/reliability/test_raw_inputs.py", "tests/test_distributed_benchmark.py",
    "tests/test_weighting_aggregators.py", "tests/test_builders.py", "tests/test_retrieval_metrics.py",
    "tests/reliability/test_bad_inputs.py", "tests/test_encoders_backbone.py", "tests/test_wide_and_ensemble.py",
    "tests/test_mm_methods_harness.py", "tests/reliability/test_internal_fallbacks.py", "tests/test_modality_mask.py",
    "tests/test_distribute_fault_tolerance.py", "tests/reliability/test_weighting_reload.py",
    "tests/test_export_wide_and_ensemble.py", "tests/test_encoders_transformer.py",
)


def pytest_collection_modifyitems(config, items):
    """Slow files first (stable: everything else keeps its order); every worker sorts alike."""
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


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
