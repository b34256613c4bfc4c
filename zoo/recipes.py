"""Build an entry's model from its recipe: encoders by kind, tasks, builder and its arguments."""

from __future__ import annotations

from typing import Any, Sequence

import keras

import mtmm_keras as mk

ENCODER_KINDS = ("image", "audio", "tabular", "text")


def encoder(modality: str, spec: dict[str, Any]) -> keras.Model:
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in ENCODER_KINDS:
        raise ValueError(f"recipe encoder {modality!r}: unknown kind {kind!r}; valid: {ENCODER_KINDS}.")
    return getattr(mk.encoders, kind)(input_name=modality, name=f"{modality}_encoder", **spec)


def tasks(recipe: dict[str, Any]) -> list[mk.Task]:
    return [mk.Task.from_config(t) for t in recipe.get("tasks", [])]


def build(recipe: dict[str, Any], modalities: Sequence[str] | None = None, compile: bool = True) -> keras.Model:
    """The compiled model of `recipe`; `modalities` (a subset) builds the single-modality baseline.

    `compile=False` gives the bare architecture (used to save weights without optimizer state)."""
    keras.utils.set_random_seed(recipe.get("fit", {}).get("seed", 0))
    specs = recipe["encoders"]
    chosen = list(modalities or specs)
    encoders = {m: encoder(m, specs[m]) for m in chosen}
    kwargs = dict(recipe.get("builder_kwargs", {}))
    fit = recipe.get("fit", {})
    optimizer = keras.optimizers.Adam(fit.get("learning_rate", 1e-3))
    builder = recipe["builder"]
    if modalities is not None and len(chosen) == 1 and builder == "attention_fusion":
        (only,) = encoders.values()
        width = kwargs.get("fusion_dim", 64)
        return mk.builders.hard_sharing(only, tasks(recipe), trunk_units=(width,), optimizer=optimizer, compile=compile, name=f"{chosen[0]}_only")
    if builder in ("hard_sharing", "soft_sharing"):
        if len(encoders) != 1:
            raise ValueError(f"recipe: {builder} takes exactly one encoder, got {chosen}.")
        (only,) = encoders.values()
        return getattr(mk.builders, builder)(only, tasks(recipe), optimizer=optimizer, compile=compile, **kwargs)
    if builder == "attention_fusion":
        return mk.builders.attention_fusion(encoders, tasks(recipe), optimizer=optimizer, compile=compile, **kwargs)
    if builder == "joint_embedding":
        loss = mk.losses.get(kwargs.pop("loss", "max_margin"))
        loss_config = recipe.get("loss_config")
        if loss_config:
            loss = type(loss).from_config({**loss.get_config(), **loss_config})
        return mk.builders.joint_embedding(encoders, loss=loss, optimizer=optimizer, compile=compile, **kwargs)
    raise ValueError(f"recipe: unknown builder {builder!r}.")
