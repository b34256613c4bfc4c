"""Pieces every builder uses: resolving `inputs`, per-modality encoder inputs, dense stacks, compiling."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from mtmm_keras import _checks
from mtmm_keras.layers.modality_mask import MODALITY_MASK
from mtmm_keras.tasks import Task


def concatenated_encoder(encoders: dict[str, keras.Model], name: str = "inputs_encoder") -> keras.Model:
    """One encoder whose features are the concatenated (flattened) features of several, with one input per
    modality named after it: how the multi-task builders take a dict of encoders (e.g. title + tabular)."""
    inputs, features = modality_features(encoders, min_modalities=1, builder="a dict of `inputs` encoders",
                                         flatten_features=False, argument="inputs")
    flat = [keras.layers.Flatten(name=f"{m}_flat")(f) if len(f.shape) > 2 else f for m, f in features.items()]
    return keras.Model(list(inputs.values()), keras.layers.Concatenate(name="features")(flat), name=name)


def resolve_inputs(inputs: Any, default_name: str = "features") -> tuple[Any, Any]:
    """Turn a shape tuple, a `keras.Input`, an encoder `keras.Model` or a dict {modality: encoder} into
    (model inputs, feature tensor)."""
    if isinstance(inputs, dict):
        inputs = concatenated_encoder(inputs)
    if isinstance(inputs, keras.Model):
        if len(inputs.outputs) != 1:
            raise ValueError(f"`inputs` encoder {inputs.name!r} must have exactly one output, it has {len(inputs.outputs)}.")
        model_inputs = [
            keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0]) for t in inputs.inputs
        ]
        features = inputs(model_inputs[0] if len(model_inputs) == 1 else model_inputs)
        return (model_inputs[0] if len(model_inputs) == 1 else model_inputs), flatten(features)
    if isinstance(inputs, keras.KerasTensor):
        return inputs, flatten(inputs)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(d, int) and not isinstance(d, bool) for d in inputs):
        shape = tuple(_checks.positive_int(d, f"inputs[{i}]") for i, d in enumerate(inputs))
        tensor = keras.Input(shape=shape, name=default_name)
        return tensor, flatten(tensor)
    raise TypeError(
        "`inputs` must be an input shape tuple such as (100,), a keras.Input, an encoder keras.Model, or a dict "
        "{modality name: encoder keras.Model}; "
        f"got {type(inputs).__name__} {inputs!r}."
    )


def flatten(tensor: Any) -> Any:
    return keras.layers.Flatten()(tensor) if len(tensor.shape) > 2 else tensor


def modality_features(encoders: Any, min_modalities: int, builder: str, flatten_features: bool = True,
                      argument: str = "encoders") -> tuple[dict, dict]:
    """For each modality, an `Input` named after it and the encoder's features for it (flattened to
    `[batch, features]` unless `flatten_features=False`); errors name `argument`."""
    if not isinstance(encoders, dict):
        raise TypeError(f"`{argument}` must be a dict {{modality name: keras.Model}}, got {type(encoders).__name__}.")
    if len(encoders) < min_modalities:
        raise ValueError(
            f"{builder} needs at least {min_modalities} modalities in `{argument}`, got {len(encoders)}: {list(encoders)}."
        )
    inputs, features = {}, {}
    for modality, encoder in encoders.items():
        if not isinstance(modality, str) or not modality.isidentifier():
            raise ValueError(f"`{argument}` keys must be identifiers (they name inputs and outputs), got {modality!r}.")
        if modality == MODALITY_MASK:
            raise ValueError(f"`{argument}` key {MODALITY_MASK!r} is reserved for the modality-mask input; rename the modality.")
        if not isinstance(encoder, keras.Model):
            raise TypeError(f"`{argument}[{modality!r}]` must be a keras.Model, got {type(encoder).__name__}.")
        if len(encoder.inputs) != 1 or len(encoder.outputs) != 1:
            raise ValueError(
                f"`{argument}[{modality!r}]` must have one input and one output; it has "
                f"{len(encoder.inputs)} inputs and {len(encoder.outputs)} outputs."
            )
        spec = encoder.inputs[0]
        inputs[modality] = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=modality)
        features[modality] = encoder(inputs[modality])
        if flatten_features:
            features[modality] = flatten(features[modality])
    return inputs, features




def modality_mask_input(modalities: Sequence[str], modality_dropout: Any, modality_mask: Any) -> tuple[Any, Any]:
    """(the `modality_mask` Input `[batch, M]`, the mask the fusion reads) for a fusion builder, or (None, None).

    With `modality_dropout` > 0 or `modality_mask=True` the model takes `modality_mask` (1 = present, columns in
    `modalities` order) and passes it through `ModalityDropout(modality_dropout)` (drops modalities while
    training, never all of a row's; identity at inference).
    """
    from mtmm_keras.layers import ModalityDropout

    rate = _checks.dropout_rate(modality_dropout, "modality_dropout")
    if not isinstance(modality_mask, bool):
        raise TypeError(f"`modality_mask` must be True or False, got {modality_mask!r}.")
    if not (rate > 0 or modality_mask):
        return None, None
    mask_input = keras.Input(shape=(len(modalities),), name=MODALITY_MASK)
    return mask_input, ModalityDropout(rate, name="modality_dropout")(mask_input)


def dense_stack(x: Any, units: Sequence[int], activation: str, dropout: float, prefix: str) -> Any:
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation=activation, name=f"{prefix}_dense{i + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout{i + 1}")(x)
    return x


def make_optimizer(optimizer: Any, learning_rate: float | None) -> Any:
    if learning_rate is not None:
        learning_rate = _checks.positive_float(learning_rate, "learning_rate")
    if isinstance(optimizer, str):
        try:
            opt = keras.optimizers.get(optimizer)
        except ValueError:
            raise ValueError(f"`optimizer`: unknown optimizer {optimizer!r} (try 'adam', 'sgd', 'rmsprop', 'adamw').") from None
        if learning_rate is not None:
            opt.learning_rate = learning_rate
        return opt
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if learning_rate is not None and not _same_rate(optimizer.learning_rate, learning_rate):
            raise ValueError(
                f"`learning_rate`={learning_rate!r} disagrees with the `optimizer` you passed ({type(optimizer).__name__} "
                f"with learning rate {_describe_rate(optimizer.learning_rate)}): set it on the optimizer, or drop "
                "`learning_rate`."
            )
        return optimizer
    raise TypeError(f"`optimizer` must be a name or a keras.optimizers.Optimizer, got {optimizer!r}.")


def _same_rate(own: Any, learning_rate: float) -> bool:
    if isinstance(own, keras.optimizers.schedules.LearningRateSchedule):
        return False
    return bool(np.isclose(float(keras.ops.convert_to_numpy(own)), learning_rate, rtol=1e-6, atol=0.0))


def _describe_rate(own: Any) -> str:
    if isinstance(own, keras.optimizers.schedules.LearningRateSchedule):
        return f"schedule {type(own).__name__}"
    return f"{float(keras.ops.convert_to_numpy(own)):g}"


# Builder compile defaults, measured with `python -m benchmarks.train_speed` (README "Speed"):
# - steps_per_execution=32 runs 32 training steps per call into the backend instead of one, which
#   removes most of the per-step Python, callback and dispatch work that dominates small models
#   (hard sharing, 2-core CPU: 0.68x -> 1.05x PyTorch's samples/s on TensorFlow). Results are
#   bit-identical; callbacks' batch hooks and the progress bar update every 32 steps instead.
# - jit_compile stays Keras's "auto" (XLA on JAX, and on TensorFlow only with a GPU): on TF CPU,
#   XLA measured no faster for the hard-sharing MLP and ~2x slower for Conv2D/LSTM encoders.
#   The exception is a model with stacked towers (`StackedDense`, i.e. soft sharing) or an expert bank
#   (`Experts`: MMoE, CGC, PLE) on the TensorFlow backend: XLA fuses the transposes around their batched
#   matmuls (oneDNN runs each as its own kernel) and the ParameterDistance penalty's element-wise ops:
#   ~1.35x samples/s for soft sharing on CPU, and 1.38x CGC, 1.80x PLE, 1.47x the train_speed MMoE
#   (`python -m benchmarks.backend_speed` models, side by side in one process), so it is on by default there.
COMPILE_DEFAULTS: dict[str, Any] = {"steps_per_execution": 32}


def compile_kwargs_with_defaults(compile_kwargs: dict[str, Any], model: keras.Model | None = None) -> dict[str, Any]:
    """`COMPILE_DEFAULTS` (plus XLA for stacked towers on TensorFlow), then what the model's
    `tf.distribute` strategy needs (`mk.distribute.compile_defaults`: one step per execution, no
    XLA), then what the caller passed."""
    from mtmm_keras.distribute import compile_defaults as strategy_defaults

    defaults = dict(COMPILE_DEFAULTS)
    if model is not None and keras.backend.backend() == "tensorflow" and _has_batched_matmul_layers(model):
        defaults["jit_compile"] = True
    defaults.update(strategy_defaults(model))
    return {**defaults, **compile_kwargs}


def _has_batched_matmul_layers(model: keras.Model) -> bool:
    """Whether `model` (or a model inside it) has stacked towers or an expert bank, which XLA trains faster on TF."""
    from mtmm_keras.layers import Experts, StackedDense

    return any(
        isinstance(layer, (StackedDense, Experts))
        or (isinstance(layer, keras.Model) and _has_batched_matmul_layers(layer))
        for layer in model.layers
    )


def compile_for_tasks(
    model: keras.Model, tasks: Sequence[Task], optimizer: Any, learning_rate: float | None, *,
    weighting: Any = "static", **kwargs: Any,
) -> None:
    """Compile with one loss, λ_t and metric list per task output, combined by `weighting`.

    `weighting` is a method name from `mk.weighting.names()` (static: L = Σ_t λ_t · mean L_t) or an
    `mk.weighting.Weighting` instance; it is set on the model before `compile` so that a method with
    learned state (uncertainty's log σ²) is trained by the same optimizer.
    """
    from mtmm_keras.weighting import get as get_weighting

    method = get_weighting(weighting)  # ValueError/TypeError naming `weighting` and the valid names
    if hasattr(model, "set_weighting"):
        model.set_weighting(method)
    elif method.method_name != "static":
        raise TypeError(
            f"`weighting` {method.method_name!r} needs an mk.models.MultiTaskModel; got {type(model).__name__}."
        )
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss={t.name: t.keras_loss() for t in tasks},
        loss_weights={t.name: t.weight for t in tasks},
        metrics={t.name: t.keras_metrics(named=len(tasks) == 1) for t in tasks},
        **compile_kwargs_with_defaults(kwargs, model),
    )


def check_reserved_names(tasks: Sequence[Task], reserved: set[str], where: str) -> None:
    clash = sorted({t.name for t in tasks} & reserved)
    if clash:
        raise ValueError(f"`tasks` names {clash} clash with {where}; rename the task(s).")


# --- the steps every fusion builder shares (attention, concat, gated, Transformer) -----------------

def check_fusion_arguments(encoders: Any, tasks: Sequence[Task], fusion_dim: Any, hidden_units: Any, dropout: Any,
                           reserved_outputs: Sequence[str] = ()) -> tuple[list[Task], int, tuple[int, ...], float]:
    """The checked (tasks, fusion_dim, hidden_units, dropout) of a fusion builder, before anything is built;
    task names may not clash with the modality names (inputs) or `reserved_outputs`."""
    from mtmm_keras.tasks import validate_tasks

    tasks = validate_tasks(tasks)
    fusion_dim = _checks.positive_int(fusion_dim, "fusion_dim")
    hidden_units = _checks.units_tuple(hidden_units, "hidden_units")
    dropout = _checks.dropout_rate(dropout, "dropout")
    reserved = (set(encoders) if isinstance(encoders, dict) else set()) | set(reserved_outputs)
    check_reserved_names(tasks, reserved, "modality/output names" if reserved_outputs else "modality names")
    return tasks, fusion_dim, hidden_units, dropout


def fusion_inputs(encoders: Any, builder: str, modality_dropout: Any, modality_mask: Any,
                  flatten_features: bool = True) -> tuple[dict, dict, Any]:
    """Step 1 of a fusion builder: (inputs by modality plus `modality_mask` when the model takes it, each
    encoder's features, the mask the fusion layer reads or None)."""
    inputs, features = modality_features(encoders, min_modalities=2, builder=builder, flatten_features=flatten_features)
    mask_input, mask = modality_mask_input(list(features), modality_dropout, modality_mask)
    if mask_input is not None:
        inputs[MODALITY_MASK] = mask_input
    return inputs, features, mask


def fused_task_model(inputs: dict, fused: Any, tasks: Sequence[Task], hidden_units: Sequence[int], dropout: float,
                     hidden_activation: str, *, optimizer: Any, learning_rate: float | None, weighting: Any,
                     compile: bool, name: str, compile_kwargs: dict[str, Any]) -> keras.Model:
    """The last step of a fusion builder: `hidden_units` layers (`hidden_activation`) on the fused vector, one
    head per task, the (compiled) `MultiTaskModel`."""
    from mtmm_keras.models import MultiTaskModel

    _checks.activation(hidden_activation, "hidden_activation")
    x = dense_stack(fused, hidden_units, hidden_activation, dropout, prefix="fused")
    outputs = {task.name: task.build_head(x) for task in tasks}
    model = MultiTaskModel(inputs, outputs, name=name)
    model.set_tasks(tasks)
    if compile:
        compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
