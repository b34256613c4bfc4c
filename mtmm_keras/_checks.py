"""Argument checks shared by builders, layers and losses: each error names the argument and what is valid."""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable


def positive_int(value: Any, name: str) -> int:
    """Return `value` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _real(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {what}, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be {what}, got {value!r} (NaN and infinity are not allowed).")
    return value


def non_negative_float(value: Any, name: str) -> float:
    """Return `value` as a float, or raise if it is negative, NaN, infinite or not a number."""
    value = _real(value, name, "a finite number >= 0")
    if not value >= 0.0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    return value


def positive_float(value: Any, name: str) -> float:
    """Return `value` as a float, or raise unless it is a finite number > 0."""
    value = _real(value, name, "a finite number > 0")
    if not value > 0.0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return value


def float_in_range(value: Any, name: str, low: float, high: float, high_inclusive: bool = True) -> float:
    """Return `value` as a float, or raise unless low <= value <= high (< high when not `high_inclusive`)."""
    bracket = "]" if high_inclusive else ")"
    what = f"a number in [{low:g}, {high:g}{bracket}"
    value = _real(value, name, what)
    if not (low <= value and (value <= high if high_inclusive else value < high)):
        raise ValueError(f"`{name}` must be {what}, got {value!r}.")
    return value


def dropout_rate(value: Any, name: str = "dropout") -> float:
    """Return a dropout rate: a number in [0, 1) (the fraction of units dropped during training)."""
    return float_in_range(value, name, 0.0, 1.0, high_inclusive=False)


def units_tuple(value: Any, name: str, allow_empty: bool = True) -> tuple[int, ...]:
    """Normalise a layer-width spec (an int or a sequence of ints) to a tuple of positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a sequence of positive integers, got {value!r}.")
    units = tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))
    if not units and not allow_empty:
        raise ValueError(f"`{name}` must name at least one layer width, got an empty sequence.")
    return units


def one_of(value: Any, name: str, valid: Iterable[str]) -> str:
    """Raise unless `value` is one of the `valid` strings."""
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, valid))}; got {value!r}.")
    return value


def activation(value: Any, name: str) -> Any:
    """Raise unless `value` is None, a callable, or the name of a Keras activation."""
    if value is None or callable(value):
        return value
    import keras

    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"`{name}`: unknown activation {value!r}; use a Keras activation name such as 'relu', 'gelu', "
            "'tanh', 'sigmoid', 'linear', a callable, or None."
        ) from None
    return value
