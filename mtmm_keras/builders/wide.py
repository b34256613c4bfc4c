"""The `wide=` keyword of the multi-task builders: linear paths from raw model inputs straight to every task's head
(Wide & Deep), beside the shared deep network. A bag of words over a short text's token ids is the usual one: a
linear model on word counts is often a better title classifier than a pooled embedding the experts must decode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


from mtmm_keras import _checks
from mtmm_keras.layers.wide_deep_head import WideDeepHead
from mtmm_keras.tasks import Task


@dataclass(frozen=True)
class WidePaths:
    """The model inputs with a wide path, each one's vocabulary size (None: float features), and the L2 weight."""

    tensors: tuple[Any, ...]
    vocab_sizes: tuple[int | None, ...]
    l2: float


def _input_name(tensor: Any) -> str:
    return tensor.name.split(":")[0]


def resolve_wide(model_inputs: Any, wide: Mapping[str, int | None] | None, wide_l2: Any) -> WidePaths | None:
    """Check `wide` ({model input name: vocabulary size for token ids, or None for float features}) and `wide_l2`
    against the model's inputs before anything is built; None when there is no wide path."""
    wide_l2 = _checks.non_negative_float(wide_l2, "wide_l2")
    if wide is None or (isinstance(wide, Mapping) and not wide):
        if wide_l2:
            raise ValueError(f"`wide_l2` ({wide_l2}) penalises the wide paths, but `wide` names none; set `wide` "
                             "(e.g. wide={'title': 8192}) or leave wide_l2 at 0.")
        return None
    if not isinstance(wide, Mapping):
        raise TypeError("`wide` must be a dict {model input name: vocabulary size of its token ids, or None for "
                        f"float features}}, got {type(wide).__name__} {wide!r}.")
    inputs = list(model_inputs) if isinstance(model_inputs, (list, tuple)) else [model_inputs]
    by_name = {_input_name(t): t for t in inputs}
    tensors, sizes = [], []
    for name, size in wide.items():
        if name not in by_name:
            raise ValueError(f"`wide` names the input {name!r}, which the model does not have; its inputs: "
                             f"{', '.join(repr(n) for n in by_name)}.")
        tensor = by_name[name]
        is_ids = "int" in str(tensor.dtype)
        if is_ids and size is None:
            raise ValueError(f"`wide[{name!r}]` is None (a float input's linear path), but input {name!r} holds "
                             f"{tensor.dtype} token ids: give their vocabulary size, e.g. wide={{{name!r}: 8192}}.")
        if not is_ids and size is not None:
            raise ValueError(f"`wide[{name!r}]` is a vocabulary size ({size!r}), but input {name!r} holds "
                             f"{tensor.dtype} features, not token ids: use None for its linear path.")
        if size is not None and _checks.positive_int(size, f"wide[{name!r}]") < 2:
            raise ValueError(f"`wide[{name!r}]` must be a vocabulary size >= 2 (id 0 is padding), got {size!r}.")
        if not is_ids and len(tensor.shape) != 2:
            raise ValueError(f"`wide[{name!r}]`: a float input's linear path needs [batch, features], but input "
                             f"{name!r} has shape {tuple(tensor.shape)}.")
        tensors.append(tensor)
        sizes.append(size)
    return WidePaths(tuple(tensors), tuple(sizes), wide_l2)


def task_head(task: Task, features: Any, wide: WidePaths | None) -> Any:
    """`task`'s head on `features`: its Dense head, or with wide paths a `WideDeepHead` of the same name (float32
    under a mixed-precision policy, as `Task.build_head`)."""
    if wide is None:
        return task.build_head(features)
    head = WideDeepHead(task.units, activation=task.activation, wide_vocab_sizes=wide.vocab_sizes,
                        wide_l2=wide.l2, name=task.name, dtype=task.head_dtype())
    return head([features, *wide.tensors])
