"""One checked calling convention for every builder: `builder(inputs_or_encoders, tasks, *, ...)`.

`@checked_keywords` wraps a builder so that, at call time and before anything is built,
- a keyword that is neither the builder's own nor one `model.compile` accepts raises `TypeError` naming the
  builder, the keyword and the closest valid ones (a misspelling used to reach `model.compile` as a bare
  `TypeError`, or was dropped silently with `compile=False`);
- `model.compile` keywords with `compile=False` raise `TypeError` (nothing would ever read them).
The builder's own parameters are read from its signature, so the check cannot drift from it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable, TypeVar

Builder = TypeVar("Builder", bound=Callable[..., Any])

# `model.compile` arguments a builder sets itself from `tasks`/`optimizer` (never passed through).
_SET_BY_BUILDERS = frozenset({"self", "optimizer", "loss", "loss_weights", "metrics", "weighted_metrics"})


@functools.lru_cache(maxsize=1)
def compile_keywords() -> tuple[str, ...]:
    """The `keras.Model.compile` keywords a builder passes through (e.g. `jit_compile`, `steps_per_execution`)."""
    import keras

    parameters = inspect.signature(keras.Model.compile).parameters.values()
    return tuple(sorted(p.name for p in parameters if p.kind is not p.VAR_KEYWORD and p.name not in _SET_BY_BUILDERS))


def _own_keywords(function: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_keywords(builder: str, own: list[str], kwargs: dict[str, Any], compiles: bool) -> None:
    """Raise `TypeError` for a keyword `builder` does not take, or a compile keyword with `compile=False`."""
    passthrough = compile_keywords()
    for keyword in kwargs:
        if keyword in own:
            continue
        if keyword not in passthrough:
            close = difflib.get_close_matches(keyword, [*own, *passthrough], n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TypeError(
                f"{builder}() got an unexpected keyword argument {keyword!r}.{hint} Its keywords: "
                f"{', '.join(own)}; and model.compile's: {', '.join(passthrough)}."
            )
        if not compiles:
            raise TypeError(
                f"{builder}(compile=False) got the model.compile keyword {keyword!r}, which would be ignored: "
                f"pass it to model.compile yourself, or leave compile=True."
            )


def checked_keywords(*, forwards_to: Callable[..., Any] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: check a builder's keywords (see the module docstring) before its body runs.

    `forwards_to`: a builder whose keywords this one passes on through `**kwargs` (`cgc` → `ple`); they count as
    this builder's own.
    """

    def decorate(builder: Builder) -> Builder:
        own = _own_keywords(builder)
        if forwards_to is not None:
            own += [k for k in _own_keywords(inspect.unwrap(forwards_to)) if k not in own and k != "num_levels"]
        signature = inspect.signature(builder)
        compile_default = signature.parameters["compile"].default if "compile" in signature.parameters else True

        @functools.wraps(builder)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_keywords(builder.__name__, own, kwargs, compiles=bool(kwargs.get("compile", compile_default)))
            return builder(*args, **kwargs)

        wrapper.__signature__ = signature  # help() and IDEs show the builder's own parameters
        return wrapper  # type: ignore[return-value]

    return decorate
