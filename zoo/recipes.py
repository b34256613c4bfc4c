"""Build an entry's model from its recipe: encoders by kind, tasks, builder and its arguments.

Every entry's model takes the raw input a device has: uint8 pixels (the image encoder casts and
rescales inside), the float32 waveform (the audio encoder's log-mel front end), unscaled tabular
features (the tabular encoder's `Standardization`).

`build` draws its initial weights from the recipe's seed without touching the caller's random state
(Python `random`, NumPy's global RNG, TensorFlow's global seed, Keras's global SeedGenerator), so
building or loading an entry never resets a user's seeds; `mtmm zoo train` fits under the same
`seeded` block, so retraining stays deterministic.
"""

from __future__ import annotations

import contextlib
import copy
import random
import warnings
from typing import Any, Iterator, Sequence

import keras
import numpy as np

import mtmm_keras as mk
from mtmm_keras.encoders import audio as _audio  # noqa: F401  registers LogMelSpectrogram before any entry loads

ENCODER_KINDS = ("image", "audio", "tabular", "text")
# Builders whose tasks share one input representation: several encoders are concatenated into it.
SINGLE_TRUNK_BUILDERS = ("hard_sharing", "soft_sharing", "mmoe", "cgc", "ple", "cross_stitch")
# Builders that take one encoder per modality and fuse them (their one-modality baseline is hard sharing).
FUSION_BUILDERS = ("attention_fusion", "concat_fusion", "gated_fusion", "transformer_fusion")


def encoder(modality: str, spec: dict[str, Any]) -> keras.Model:
    """Build the encoder a recipe describes for one modality (`mk.encoders.<kind>(**spec)`). A text encoder's own
    `kind` (its architecture: "lstm", "conv", "mean") is spelled `text_kind` in the recipe."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in ENCODER_KINDS:
        raise ValueError(f"recipe encoder {modality!r}: unknown kind {kind!r}; valid: {ENCODER_KINDS}.")
    if "text_kind" in spec:
        if kind != "text":
            raise ValueError(f"recipe encoder {modality!r}: `text_kind` is for kind 'text', not {kind!r}.")
        spec["kind"] = spec.pop("text_kind")
    return getattr(mk.encoders, kind)(input_name=modality, name=f"{modality}_encoder", **spec)


def tasks(recipe: dict[str, Any]) -> list[mk.Task]:
    """The recipe's tasks as `mk.Task` objects."""
    return [mk.Task.from_config(t) for t in recipe.get("tasks", [])]


def _tf_seed_state() -> Any:
    """TensorFlow's global seed and its eager op-seed generator state (None without TensorFlow or its internals)."""
    try:
        import tensorflow as tf
    except ImportError:
        return None  # no TensorFlow: nothing of it to restore
    try:
        from tensorflow.python.eager import context

        ctx = context.context()
        if not (hasattr(ctx, "_seed") and hasattr(ctx, "_set_global_seed")):
            raise AttributeError("_seed/_set_global_seed")
    except (ImportError, AttributeError):
        warnings.warn(_TF_SEED_WARNING, RuntimeWarning, stacklevel=3)
        return None
    rng = getattr(ctx, "_rng", None)
    return (getattr(ctx, "_seed", None), rng.getstate() if rng is not None else None,
            tf.compat.v1.get_default_graph().seed)


_TF_SEED_WARNING = ("TensorFlow internals for its global seed are missing or changed: building a zoo model leaves "
                    "TensorFlow's global seed set (Python's and NumPy's are still restored).")


def _restore_tf_seed_state(state: Any) -> None:
    if state is None:
        return
    import tensorflow as tf

    seed, rng_state, graph_seed = state
    try:
        from tensorflow.python.eager import context

        ctx = context.context()
        if seed is None:
            ctx._seed, ctx._rng = None, None
        else:
            ctx._set_global_seed(seed)
            if rng_state is not None:
                ctx._rng.setstate(rng_state)
    except (ImportError, AttributeError):
        warnings.warn(_TF_SEED_WARNING, RuntimeWarning, stacklevel=3)
    tf.compat.v1.get_default_graph().seed = graph_seed


def _keras_seed_state() -> Any:
    """Keras's global seed and SeedGenerator (internal API: None, with a warning, where it is not there)."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils
    except ImportError:
        warnings.warn("Keras internals for its global seed are missing: building a zoo model sets Keras's and "
                      "TensorFlow's global seeds (Python's and NumPy's are still restored).", RuntimeWarning, stacklevel=3)
        return None
    return (global_state, (rng_utils.GLOBAL_RANDOM_SEED, global_state.get_global_attribute(rng_utils.GLOBAL_RANDOM_SEED)),
            (seed_generator.GLOBAL_SEED_GENERATOR, global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)))


def _restore_keras_seed_state(state: Any) -> None:
    if state is None:
        return
    global_state, *attributes = state
    for name, value in attributes:
        global_state.set_global_attribute(name, value)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block as after `keras.utils.set_random_seed(seed)`, then put every global RNG back as it was
    (Python and NumPy through public APIs; Keras and TensorFlow through internals, guarded)."""
    saved = (random.getstate(), np.random.get_state(), _tf_seed_state(), _keras_seed_state())
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        python_state, numpy_state, tf_state, keras_state = saved
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        _restore_tf_seed_state(tf_state)
        _restore_keras_seed_state(keras_state)


def build(recipe: dict[str, Any], modalities: Sequence[str] | None = None, compile: bool = True) -> keras.Model:
    """The compiled model of `recipe`; `modalities` (a subset) builds the single-modality baseline.

    `compile=False` gives the bare architecture (used to save weights without optimizer state).
    A recipe with `ensemble` K > 1 gives K members built from consecutive seeds, averaged (`ensemble_of`).
    The initial weights come from the recipe's seed; the caller's global random state is left as it
    was (training runs its `fit` under `seeded(seed_of(recipe))` too)."""
    if modalities is None and ensemble_size(recipe) > 1:
        members = [build(member_recipe(recipe, k), compile=False) for k in range(ensemble_size(recipe))]
        return ensemble_of(recipe, members, compile)
    with seeded(seed_of(recipe)):
        return _build(recipe, modalities, compile)


def seed_of(recipe: dict[str, Any]) -> int:
    """The recipe's training seed (0 when unset)."""
    return int(recipe.get("fit", {}).get("seed", 0))


def ensemble_size(recipe: dict[str, Any]) -> int:
    """How many seeds the entry's model averages (the recipe's `ensemble`, 1 when unset): K > 1 trains the recipe
    from fit.seed, fit.seed + 1, … fit.seed + K − 1 and ships the mean of their outputs (`mk.models.average_ensemble`)."""
    size = recipe.get("ensemble", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"recipe `ensemble` must be a positive integer (how many seeds are averaged), got {size!r}.")
    if size > 1 and recipe.get("builder") == "joint_embedding":
        raise ValueError("recipe `ensemble`: a joint-embedding (retrieval) entry cannot average seeds (each seed's "
                         "embedding space is its own); leave `ensemble` out.")
    return size


def member_recipe(recipe: dict[str, Any], index: int) -> dict[str, Any]:
    """Member `index` of an ensemble recipe: the same recipe without `ensemble`, its fit.seed raised by `index`."""
    member = copy.deepcopy(recipe)
    member.pop("ensemble", None)
    member.setdefault("fit", {})["seed"] = seed_of(recipe) + index
    return member


def ensemble_of(recipe: dict[str, Any], members: Sequence[keras.Model], compile: bool = True) -> keras.Model:
    """The entry's model from its trained (or freshly built) members: their outputs averaged, compiled as a member."""
    from mtmm_keras.builders import _common

    with seeded(seed_of(recipe)):  # the members' copies draw initial weights: the caller's random state is kept
        model = mk.models.average_ensemble(members, name=f"{recipe['builder']}_ensemble")
    if compile:
        optimizer = keras.optimizers.Adam(recipe.get("fit", {}).get("learning_rate", 1e-3))
        _common.compile_for_tasks(model, tasks(recipe), optimizer, None)
    return model


def _build(recipe: dict[str, Any], modalities: Sequence[str] | None, compile: bool) -> keras.Model:
    specs = recipe["encoders"]
    chosen = list(modalities or specs)
    encoders = {m: encoder(m, specs[m]) for m in chosen}
    kwargs = dict(recipe.get("builder_kwargs", {}))
    if modalities is not None and kwargs.get("wide"):  # an ablation keeps the wide paths of its own inputs only
        kwargs["wide"] = {name: size for name, size in kwargs["wide"].items() if name in chosen}
        if not kwargs["wide"]:
            kwargs.pop("wide")
            kwargs.pop("wide_l2", None)
    fit = recipe.get("fit", {})
    optimizer = keras.optimizers.Adam(fit.get("learning_rate", 1e-3))
    builder = recipe["builder"]
    if modalities is not None and len(chosen) == 1 and builder in FUSION_BUILDERS:
        (only,) = encoders.values()
        width = kwargs.get("fusion_dim", 64)
        return mk.builders.hard_sharing(only, tasks(recipe), trunk_units=(width,), optimizer=optimizer, compile=compile, name=f"{chosen[0]}_only")
    if builder in SINGLE_TRUNK_BUILDERS:
        trunk_input = next(iter(encoders.values())) if len(encoders) == 1 else encoders  # several: concatenated
        return getattr(mk.builders, builder)(trunk_input, tasks(recipe), optimizer=optimizer, compile=compile, **kwargs)
    if builder in FUSION_BUILDERS:
        return getattr(mk.builders, builder)(encoders, tasks(recipe), optimizer=optimizer, compile=compile, **kwargs)
    if builder == "joint_embedding":
        loss = mk.losses.get(kwargs.pop("loss", "max_margin"))
        loss_config = recipe.get("loss_config")
        if loss_config:
            loss = type(loss).from_config({**loss.get_config(), **loss_config})
        return mk.builders.joint_embedding(encoders, loss=loss, optimizer=optimizer, compile=compile, **kwargs)
    raise ValueError(f"recipe: unknown builder {builder!r}.")
