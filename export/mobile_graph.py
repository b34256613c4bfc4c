"""ONNX rewrites for ONNX Runtime Mobile's NNAPI and CoreML execution providers (the `ios` target): each replaces an
op those EPs do not take by ops they do, with the same outputs (exactly, or up to float summation order), on a
graph with static shapes. The verifier then checks the rewritten file against the Keras model like any other.

| op (as tf2onnx writes it)                          | becomes                                            | same outputs   |
|----------------------------------------------------|----------------------------------------------------|----------------|
| `Not(Equal(x, 0))` (a `safe_divide`'s x ≠ 0)        | `Cast(x → bool)` (non-zero, NaN and ±inf: true)    | exactly        |
| `Where(Equal(x, 0), a, b)`                         | `Where(Cast(x → bool), b, a)`                      | exactly        |
| `Greater(m, c)` / `Less(m, c)`, `m` computed from   | `Cast(Relu(m − c) → bool)` / `Cast(Relu(c − m) …)` | exactly for a  |
| the `modality_mask` input alone, `c` a constant    | (x − c ≠ 0 exactly when x ≠ c, IEEE subnormals)    | finite mask    |
| `ReduceMin(x)`                                     | `−ReduceMax(−x)` (negation by `Mul(·, −1)`)        | exactly        |
| `ReduceSum(x, one axis of static length L)`        | `MatMul(x, ones[L, 1])` (after a `Transpose` when  | summation order|
|                                                    | the axis is not the last), `Reshape` to its shape  |                |
| `Reciprocal(x)`                                    | `Div(1, x)`                                        | exactly        |
| `Min(a, b)`                                        | `−Max(−a, −b)`                                     | exactly        |
| `Unsqueeze(x, constant axes)`                      | `Reshape(x, its static shape)`                     | exactly        |
| `Gather(table, Where(Less(Cast(i), 0), i + n, i))`  | `GatherND(table, Reshape(i, [..., 1]))` (ONNX      | exactly        |
| (tf2onnx's negative-index fix-up of an embedding)  | gathers take negative indices themselves)          |                |

Every select keeps its `Where` (a masked modality's NaN or inf is selected away, never multiplied by 0), so the
rewritten graphs stay NaN-inert (tests/test_export_targets_masking.py runs them). What the EPs still refuse is named
per EP in the manifest (`mobile_usability`) and in docs/export.md.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

MASK_INPUT = "modality_mask"
# ReduceSum over an axis longer than this is left alone (its ones column would be large for nothing)
MAX_SUM_AXIS = 4096


def rewrite_file(path: str) -> dict[str, int]:
    """Rewrite the ONNX file at `path` in place (see the module docstring); returns {what was rewritten: count}
    (empty: the file is left untouched)."""
    import onnx

    model = onnx.load(path)
    counts = rewrite(model)
    if counts:
        onnx.checker.check_model(model)
        onnx.save(model, path)
    return counts


def rewrite(model) -> dict[str, int]:
    """Apply every rewrite to `model` (an onnx.ModelProto with static shapes) in place; {rewrite: count}."""
    graph = _Graph(model)
    counts: dict[str, int] = collections.Counter()
    for name, rule in _RULES:
        for node in list(graph.nodes):
            if id(node) in graph.removed:
                continue
            if rule(graph, node):
                counts[name] += 1
    graph.commit()
    return dict(counts)


class _Graph:
    """The model's main graph with shape information, constants and a producer map; edits are collected and
    written back in topological order by `commit`."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.helper = onnx, onnx.helper
        self.model = model
        inferred = onnx.shape_inference.infer_shapes(model)
        self.types: dict[str, Any] = {}
        for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            self.types[value.name] = value.type.tensor_type
        self.constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.nodes = list(model.graph.node)
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.inputs = {value.name for value in model.graph.input} - set(self.constants)
        self.removed: set[int] = set()  # id() of each dropped node (protobuf messages do not hash)
        self._counter = 0

    # --- queries --------------------------------------------------------------------------------------------
    def shape(self, name: str) -> list[int] | None:
        """The static shape of value `name` (None when unknown or partly dynamic)."""
        if name in self.constants:
            return list(self.constants[name].shape)
        tensor = self.types.get(name)
        if tensor is None or not tensor.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        return None if any(d is None for d in dims) else dims

    def elem_type(self, name: str) -> int | None:
        if name in self.constants:
            return self.helper.np_dtype_to_tensor_dtype(self.constants[name].dtype)
        tensor = self.types.get(name)
        return tensor.elem_type if tensor is not None else None

    def from_mask_only(self, name: str) -> bool:
        """Whether value `name` is computed from the `modality_mask` input and constants alone."""
        seen, stack, touched_mask = set(), [name], False
        while stack:
            value = stack.pop()
            if value in seen or value == "" or value in self.constants:
                continue
            seen.add(value)
            if value in self.inputs:
                if value != MASK_INPUT:
                    return False
                touched_mask = True
                continue
            node = self.producer.get(value)
            if node is None:
                return False
            stack.extend(node.input)
        return touched_mask

    def attribute(self, node, name: str, default=None):
        for attribute in node.attribute:
            if attribute.name == name:
                return self.helper.get_attribute_value(attribute)
        return default

    # --- edits ----------------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"mobile_rewrite/{hint}_{self._counter}"

    def constant(self, value: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.constants[name] = np.asarray(value)
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op.lower())
        new = self.helper.make_node(op, inputs, [output], name=self.fresh(op), **attrs)
        self.nodes.append(new)
        self.producer[output] = new
        return output

    def replace(self, old, output: str) -> None:
        """Drop `old` (one output); `output`, a new value, takes its place for every consumer and graph output."""
        self.removed.add(id(old))
        name = old.output[0]
        # the new chain ends in a value named like the old one: rename its producer's output
        producer = self.producer[output]
        for i, out in enumerate(producer.output):
            if out == output:
                producer.output[i] = name
        self.producer[name] = producer

    def commit(self) -> None:
        """Drop the nodes nothing uses any more, and write the rest back in topological order (new nodes were
        appended after their consumers)."""
        kept = [n for n in self.nodes if id(n) not in self.removed]
        outputs = {o.name for o in self.model.graph.output}
        while True:
            used = {i for n in kept for i in n.input} | outputs
            alive = [n for n in kept if any(o in used for o in n.output)]
            if len(alive) == len(kept):
                break
            kept = alive
        available = set(self.constants) | {v.name for v in self.model.graph.input} | {""}
        ordered, pending = [], kept
        while pending:
            ready = [n for n in pending if all(i in available for i in n.input)]
            if not ready:
                raise ValueError("mobile rewrite left a cycle or a dangling input: "
                                 + ", ".join(f"{n.op_type}:{n.name}" for n in pending[:5]))
            ids = {id(n) for n in ready}
            pending = [n for n in pending if id(n) not in ids]
            for n in ready:
                ordered.append(n)
                available.update(n.output)
        del self.model.graph.node[:]
        self.model.graph.node.extend(ordered)
        used = {i for n in ordered for i in n.input}
        keep = [t for t in self.model.graph.initializer if t.name in used]
        del self.model.graph.initializer[:]
        self.model.graph.initializer.extend(keep)
        # shapes recorded for values that changed producer could be stale: let ONNX Runtime infer them again
        del self.model.graph.value_info[:]


FLOAT = 1  # onnx.TensorProto.FLOAT
BOOL = 9  # onnx.TensorProto.BOOL
INT64 = 7  # onnx.TensorProto.INT64
INT32 = 6  # onnx.TensorProto.INT32


def _scalar_zero(graph: _Graph, name: str) -> bool:
    value = graph.constants.get(name)
    return value is not None and value.size >= 1 and bool(np.all(value == 0))


def _not_equal_zero(graph: _Graph, node) -> bool:
    """Not(Equal(x, 0)) → Cast(x → bool)."""
    if node.op_type != "Not":
        return False
    equal = graph.producer.get(node.input[0])
    if equal is None or equal.op_type != "Equal" or graph.elem_type(equal.input[0]) not in (FLOAT, INT32, INT64):
        return False  # float (a safe_divide's x) or integer (token ids against the padding id 0): exact either way
    x, zero = equal.input
    if not _scalar_zero(graph, zero) or graph.shape(x) is None or graph.shape(x) != graph.shape(node.output[0]):
        return False
    graph.replace(node, graph.node("Cast", [x], to=BOOL))
    return True


def _where_on_equal_zero(graph: _Graph, node) -> bool:
    """Where(Equal(x, 0), a, b) → Where(Cast(x → bool), b, a)."""
    if node.op_type != "Where":
        return False
    equal = graph.producer.get(node.input[0])
    if equal is None or equal.op_type != "Equal" or graph.elem_type(equal.input[0]) != FLOAT:
        return False
    if not _scalar_zero(graph, equal.input[1]):
        return False
    condition = graph.node("Cast", [equal.input[0]], to=BOOL)
    graph.replace(node, graph.node("Where", [condition, node.input[2], node.input[1]]))
    return True


def _mask_comparison(graph: _Graph, node) -> bool:
    """Greater(m, c) → Cast(Relu(m − c) → bool), Less(m, c) → Cast(Relu(c − m) → bool), for `m` computed from the
    modality mask alone (finite) and a constant `c`: x − c is non-zero exactly when x ≠ c."""
    if node.op_type not in ("Greater", "Less"):
        return False
    x, c = node.input
    if c not in graph.constants or graph.elem_type(x) != FLOAT or not graph.from_mask_only(x):
        return False
    difference = graph.node("Sub", [x, c] if node.op_type == "Greater" else [c, x])
    graph.replace(node, graph.node("Cast", [graph.node("Relu", [difference])], to=BOOL))
    return True


def _axes(graph: _Graph, node) -> list[int] | None:
    axes = graph.attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in graph.constants:
            return None
        axes = graph.constants[node.input[1]].tolist()
    return None if axes is None else list(np.atleast_1d(axes))


def _reduce_min(graph: _Graph, node) -> bool:
    """ReduceMin(x) → −ReduceMax(−x)."""
    if node.op_type != "ReduceMin" or graph.elem_type(node.input[0]) != FLOAT:
        return False
    minus = graph.constant(np.asarray(-1.0, np.float32), "minus_one")
    negated = graph.node("Mul", [node.input[0], minus])
    attrs = {a.name: graph.helper.get_attribute_value(a) for a in node.attribute}
    maximum = graph.node("ReduceMax", [negated] + list(node.input[1:]), **attrs)
    graph.replace(node, graph.node("Mul", [maximum, minus]))
    return True


def _reduce_sum(graph: _Graph, node) -> bool:
    """ReduceSum over one axis of static length L → MatMul with a column of L ones (after moving the axis last)."""
    if node.op_type != "ReduceSum" or graph.elem_type(node.input[0]) != FLOAT:
        return False
    x, out = node.input[0], node.output[0]
    shape, out_shape, axes = graph.shape(x), graph.shape(out), _axes(graph, node)
    if shape is None or out_shape is None or axes is None or len(axes) != 1 or not shape:
        return False
    axis = axes[0] % len(shape)
    length = shape[axis]
    if length > MAX_SUM_AXIS:
        return False
    if axis != len(shape) - 1:
        order = [i for i in range(len(shape)) if i != axis] + [axis]
        x = graph.node("Transpose", [x], perm=order)
    summed = graph.node("MatMul", [x, graph.constant(np.ones((length, 1), np.float32), "ones")])
    graph.replace(node, graph.node("Reshape", [summed, graph.constant(np.asarray(out_shape, np.int64), "shape")]))
    return True


def _reciprocal(graph: _Graph, node) -> bool:
    """Reciprocal(x) → Div(1, x)."""
    if node.op_type != "Reciprocal" or graph.elem_type(node.input[0]) != FLOAT:
        return False
    graph.replace(node, graph.node("Div", [graph.constant(np.asarray(1.0, np.float32), "one"), node.input[0]]))
    return True


def _minimum(graph: _Graph, node) -> bool:
    """Min(a, b) → −Max(−a, −b)."""
    if node.op_type != "Min" or len(node.input) != 2 or graph.elem_type(node.input[0]) != FLOAT:
        return False
    minus = graph.constant(np.asarray(-1.0, np.float32), "minus_one")
    negated = [graph.node("Mul", [i, minus]) for i in node.input]
    graph.replace(node, graph.node("Mul", [graph.node("Max", negated), minus]))
    return True


def _unsqueeze(graph: _Graph, node) -> bool:
    """Unsqueeze(x, constant axes) → Reshape(x, its static output shape)."""
    if node.op_type != "Unsqueeze":
        return False
    shape = graph.shape(node.output[0])
    if shape is None or (len(node.input) > 1 and node.input[1] not in graph.constants):
        return False
    graph.replace(node, graph.node("Reshape", [node.input[0], graph.constant(np.asarray(shape, np.int64), "shape")]))
    return True


def _gather(graph: _Graph, node) -> bool:
    """Gather(table, indices) on axis 0 of a constant table → GatherND(table, indices[..., None]), dropping
    tf2onnx's Where(Less(Cast(i), 0), i + n, i) negative-index fix-up (ONNX gathers take negative indices)."""
    if node.op_type != "Gather" or graph.attribute(node, "axis", 0) != 0 or node.input[0] not in graph.constants:
        return False
    indices = node.input[1]
    where = graph.producer.get(indices)
    if where is not None and where.op_type == "Where":
        less = graph.producer.get(where.input[0])
        add = graph.producer.get(where.input[1])
        if (less is not None and less.op_type == "Less" and add is not None and add.op_type == "Add"
                and where.input[2] in add.input and _scalar_zero(graph, less.input[1])):
            cast = graph.producer.get(less.input[0])
            source = cast.input[0] if cast is not None and cast.op_type == "Cast" else less.input[0]
            if source == where.input[2]:
                indices = where.input[2]
    shape = graph.shape(indices)
    if shape is None or graph.elem_type(indices) not in (INT64, INT32):
        return False
    if graph.elem_type(indices) != INT64:  # GatherND takes int64 indices only
        indices = graph.node("Cast", [indices], to=INT64)
    column = graph.node("Reshape", [indices, graph.constant(np.asarray(shape + [1], np.int64), "shape")])
    graph.replace(node, graph.node("GatherND", [node.input[0], column]))
    return True


_RULES = (
    ("Not(Equal(x, 0)) -> Cast(x, bool)", _not_equal_zero),
    ("Where(Equal(x, 0), a, b) -> Where(Cast(x, bool), b, a)", _where_on_equal_zero),
    ("Gather -> GatherND", _gather),
    ("mask Greater/Less -> Cast(Relu(difference), bool)", _mask_comparison),
    ("ReduceMin -> -ReduceMax(-x)", _reduce_min),
    ("ReduceSum -> MatMul(x, ones)", _reduce_sum),
    ("Reciprocal -> Div(1, x)", _reciprocal),
    ("Min -> -Max(-a, -b)", _minimum),
    ("Unsqueeze -> Reshape", _unsqueeze),
)
