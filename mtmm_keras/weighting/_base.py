"""The contract every loss-balancing / gradient-aggregation method follows, and the name registry.

Two kinds, as in TorchJD (weighting separate from aggregation) and LibMTL (one file per method):

* loss level (`level = "loss"`): `combine(task_losses)` turns the vector of per-task mean losses
  `[T]` into one scalar to differentiate, and returns the weights it used;
* gradient level (`level = "gradient"`): `gramian_weights(gramian)` turns the Gramian G = J Jᵀ
  `[T, T]` of the per-task gradients over the shared parameters into weights w `[T]`; the model's
  train step applies the combined gradient wᵀ J to the shared parameters (`aggregate(gramian,
  task_losses)` is what the step calls; by default it is `gramian_weights`).

The model hands a method the λ-scaled task losses λ_t·L_t (λ_t = `Task.weight`, each L_t a mean over
the rows where the task's label is present), or the Jacobian of those; the weights a method returns
multiply them, so `history["weight/<task>"]` reports λ_t·w_t. Static weighting returns ones.

A method is a registered Keras layer so that its state (a learned log σ², a loss history) lives in
Keras variables that `model.save` writes and `load_model` restores, and its arguments round-trip
through `get_config`. It never sees data tensors; the model's train step calls it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

_REGISTRY: dict[str, type["Weighting"]] = {}


def register(name: str) -> Callable[[type["Weighting"]], type["Weighting"]]:
    """Class decorator: make a method available as `mk.weighting.get(name)` / `weighting=name`."""

    def decorate(cls: type["Weighting"]) -> type["Weighting"]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"weighting name {name!r} is already taken by {_REGISTRY[name].__name__}.")
        _REGISTRY[name] = cls
        cls.method_name = name
        return cls

    return decorate


def names() -> list[str]:
    """Every registered method name."""
    return sorted(_REGISTRY)


def get(identifier: Any = "static", **kwargs: Any) -> "Weighting":
    """A `Weighting` instance from a registered name (plus its keyword arguments) or an instance."""
    if isinstance(identifier, Weighting):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with a method name, not a Weighting instance.")
        return identifier
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier.lower())
        if cls is None:
            raise ValueError(f"`weighting`: unknown method {identifier!r}; valid names: {', '.join(names())}.")
        return cls(**kwargs)
    raise TypeError(
        f"`weighting` must be a method name ({', '.join(names())}) or an mk.weighting.Weighting, "
        f"got {type(identifier).__name__} {identifier!r}."
    )


class Weighting(keras.layers.Layer):
    """Base class: how a multi-task model turns T per-task losses (or gradients) into one update.

    Subclasses set `level` and implement `combine` (loss level) or `gramian_weights` (gradient
    level). State variables are made in `build_for_tasks(num_tasks)`, which the model calls once
    its tasks are known (and again, with the same count, after reloading).
    """

    level: str = "loss"
    method_name: str = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", f"weighting_{self.method_name or type(self).__name__.lower()}")
        super().__init__(**kwargs)
        self.num_tasks: int | None = None

    def build_for_tasks(self, num_tasks: int) -> None:
        """Create any state for `num_tasks` tasks; subclasses with state extend this."""
        self.num_tasks = int(num_tasks)
        self.built = True

    def combine(self, task_losses: Any, training: bool = True) -> tuple[Any, Any]:
        """Loss level: (scalar loss to differentiate, weights `[T]` used) from per-task losses `[T]`."""
        raise NotImplementedError(f"{type(self).__name__} is a {self.level}-level method; it has no combine().")

    def gramian_weights(self, gramian: Any) -> Any:
        """Gradient level: weights `[T]` from the Gramian `[T, T]` of the per-task gradients."""
        raise NotImplementedError(f"{type(self).__name__} is a {self.level}-level method; it has no gramian_weights().")

    def aggregate(self, gramian: Any, task_losses: Any) -> Any:
        """Gradient level, as the model's train step calls it: weights `[T]` from the Gramian and the
        λ-scaled per-task losses `[T]`. The default ignores the losses (`gramian_weights`); a method
        that needs them (GradNorm's loss ratios) overrides this."""
        return self.gramian_weights(gramian)

    def on_epoch_end(self, epoch_task_losses: Sequence[float]) -> None:
        """Called by `fit` after each epoch with that epoch's mean per-task losses (DWA uses it)."""

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
