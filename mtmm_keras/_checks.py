"""Argument checks shared by builders, layers and losses: each error names the argument and what is valid."""

from __future__ import annotations

import numbers
from typing import Any, Iterable


def positive_int(value: Any, name: str) -> int:
    """Return `value` as an int, or raise if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def non_negative_float(value: Any, name: str) -> float:
    """Return `value` as a float, or raise if it is negative, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a non-negative number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"`{name}` must be >= 0, got {value!r}.")
    return value


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
