import keras
import pytest

import mtmm_keras as mk
from mtmm_keras.tasks import validate_tasks


def test_task_defaults_and_logit_losses():
    task = mk.Task("cls", 10, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss = task.keras_loss()
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    assert loss.get_config()["from_logits"] is True
    soft = mk.Task("cls", 10, loss="sparse_categorical_crossentropy", activation="softmax")
    assert soft.keras_loss().get_config()["from_logits"] is False


def test_binary_accuracy_on_logits_thresholds_at_zero():
    metric = mk.Task("flag", 1, loss="binary_crossentropy", metrics=["accuracy"]).keras_metrics()[0]
    assert isinstance(metric, keras.metrics.BinaryAccuracy)
    metric.update_state([[1.0], [0.0]], [[0.2], [-0.3]])  # logits: both right
    assert float(metric.result()) == pytest.approx(1.0)


def test_task_config_round_trip():
    task = mk.Task("score", 2, loss="mae", weight=0.5, activation="relu", metrics=["mae"])
    assert mk.Task.from_config(task.get_config()) == task


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="", units=1), "name"),
        (dict(name="1abc", units=1), "name"),
        (dict(name="a", units=0), "units"),
        (dict(name="a", units=1, weight=-1.0), "weight"),
        (dict(name="a", units=1, loss="not_a_loss"), "unknown loss 'not_a_loss'"),
        (dict(name="a", units=1, activation="nope"), "activation"),
        (dict(name="a", units=1, metrics=["nope"]), "metric"),
    ],
)
def test_bad_task_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mk.Task(**kwargs)


def test_validate_tasks_errors():
    with pytest.raises(ValueError, match="`tasks` is empty"):
        validate_tasks([])
    with pytest.raises(ValueError, match="duplicate task names \\['a'\\]"):
        validate_tasks([mk.Task("a", 1), mk.Task("a", 2)])
    with pytest.raises(TypeError, match="tasks\\[1\\]"):
        validate_tasks([mk.Task("a", 1), "b"])
