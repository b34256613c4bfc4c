"""The train-speed harness's own arithmetic: FLOP counting and the timing summaries (no torch needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import mtmm_keras as mk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is a repo folder, not installed
from benchmarks import train_speed  # noqa: E402

TASKS = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)]


def test_hard_sharing_flops_match_hand_formula():
    model = mk.builders.hard_sharing((100,), TASKS, compile=False)
    pairs = [(100, 128), (128, 64), (64, 1), (64, 1), (64, 2)]
    assert train_speed.training_flops_per_sample(model) == 6 * sum(i * o for i, o in pairs)


def test_soft_sharing_flops_count_every_tower():
    model = mk.builders.soft_sharing((100,), TASKS, compile=False)
    pairs = [(100, 128), (128, 64)]
    heads = [(64, 1), (64, 1), (64, 2)]
    assert train_speed.training_flops_per_sample(model) == 6 * (3 * sum(i * o for i, o in pairs) + sum(i * o for i, o in heads))


def test_joint_embedding_flops_count_conv_lstm_and_projections():
    encoders = {"text": mk.encoders.text(50, 6, embedding_dim=8, hidden_dim=4),
                "image": mk.encoders.image((8, 8, 3), filters=(4, 8), output_dim=4)}
    model = mk.builders.joint_embedding(encoders, embedding_dim=4, compile=False)
    lstm = 6 * 4 * (8 + 4) * 4  # steps · gates · (in + hidden) · hidden
    conv1 = 8 * 8 * 3 * 3 * 3 * 4  # output positions · window · in · out
    conv2 = 4 * 4 * 3 * 3 * 4 * 8  # after the 2×2 max-pool
    dense = 8 * 4 + 4 * 4 + 4 * 4  # image features, two projections
    assert train_speed.training_flops_per_sample(model) == 6 * (lstm + conv1 + conv2 + dense)


def test_summary_and_ratio():
    s = train_speed.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert train_speed.summarize([5.0, 1.0, 4.0])["median"] == 4.0
    assert train_speed.ratio({"median": 6.0}, {"median": 2.0}) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        train_speed.summarize([])


def test_data_is_identical_for_both_sides_and_shaped_as_documented():
    x1, y1 = train_speed.make_data("hard_sharing", 32)
    x2, y2 = train_speed.make_data("hard_sharing", 32)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (32, 100) and {k: v.shape[1] for k, v in y1.items()} == {"a": 1, "b": 1, "c": 2}
    x, labels = train_speed.make_data("joint_embedding", 16)
    assert x["text"].shape == (16, 32) and x["text"].dtype == np.int32
    assert x["image"].shape == (16, 32, 32, 3) and set(np.unique(labels)) <= {-1.0, 1.0}


def test_torch_reference_matches_keras_parameter_counts():
    pytest.importorskip("torch")
    from benchmarks import torch_reference

    for case in ("hard_sharing", "soft_sharing"):
        model, _ = torch_reference.build(case)
        keras_model = (mk.builders.hard_sharing if case == "hard_sharing" else mk.builders.soft_sharing)((100,), TASKS, compile=False)
        assert sum(p.numel() for p in model.parameters()) == keras_model.count_params()


def test_builder_compile_defaults_are_fast_and_overridable():
    """The defaults the harness measures: 32 steps per execution and, for stacked towers, XLA —
    unless the caller says otherwise."""
    model = mk.builders.hard_sharing((4,), [mk.Task("a", 1)], trunk_units=(4,))
    assert model.steps_per_execution == 32
    soft = mk.builders.soft_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], tower_units=(4,))
    assert soft.steps_per_execution == 32 and soft.jit_compile is True
    model = mk.builders.soft_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], tower_units=(4,), steps_per_execution=1,
                                     jit_compile=False)
    assert model.steps_per_execution == 1 and model.jit_compile is False
    encoders = {"text": mk.encoders.text(10, 4, embedding_dim=4, hidden_dim=4, kind="conv"),
                "image": mk.encoders.image((8, 8), filters=(4,), output_dim=4)}
    assert mk.builders.joint_embedding(encoders, embedding_dim=4).steps_per_execution == 32


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_process_cpu_seconds_counts_this_process_work():
    """Checked against time.process_time() (the same user + system time, read by the C library) and on a
    child process that is busy and then idle: the loops are bounded by their own clock, never by the
    function under test, so a broken reading fails instead of spinning forever."""
    import os
    import subprocess
    import time

    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    before, before_own = train_speed.process_cpu_seconds(os.getpid()), time.process_time()
    total = 0
    while time.process_time() - before_own < 0.2:  # 200 ms of CPU
        total += sum(range(10_000))
    used, used_own = train_speed.process_cpu_seconds(os.getpid()) - before, time.process_time() - before_own
    assert used == pytest.approx(used_own, abs=3 * tick)

    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\n"  # busy: 300 ms of CPU
        "print('busy', flush=True)\n"
        "sys.stdin.readline()\n"  # idle until told to go
    )], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "busy\n"
        busy = train_speed.process_cpu_seconds(child.pid)
        assert busy >= 0.3 - tick  # the interpreter's start-up adds to it
        time.sleep(0.3)
        assert train_speed.process_cpu_seconds(child.pid) - busy <= 2 * tick  # waiting on stdin costs nothing
    finally:
        child.communicate("go\n", timeout=30)
    assert train_speed.process_cpu_seconds(2**22 + 12345) is None  # no such process
