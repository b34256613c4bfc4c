"""Issue 19, `ios` target: export/mobile_graph.py rewrites the ops ONNX Runtime's NNAPI / CoreML EPs refuse into ops
they take, with the same outputs. Each rule on a tiny hand-made graph: the op is gone, the outputs match the original
graph in ONNX Runtime bit for bit (or to float rounding for a sum), NaN and inf included where the rule is exact for
them, and the mobile usability checker stops naming the op."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from mtmm_keras.export import mobile_graph, targets
from onnx import TensorProto, helper, numpy_helper

F, I32 = TensorProto.FLOAT, TensorProto.INT32


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _rewritten(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    counts = mobile_graph.rewrite(copy)
    onnx.checker.check_model(copy)
    return copy, counts


def _ops(model):
    return [n.op_type for n in model.graph.node]


def test_safe_divide_not_equal_zero_becomes_a_bool_cast_with_the_same_outputs_for_nan_and_inf():
    # safe_divide: where(d != 0, n / where(d != 0, d, 1), 0), as tf2onnx writes it (Equal, Not, two Wheres)
    nodes = [helper.make_node("Equal", ["d", "zero"], ["eq"]), helper.make_node("Not", ["eq"], ["ne"]),
             helper.make_node("Where", ["ne", "d", "one"], ["safe_d"]), helper.make_node("Div", ["n", "safe_d"], ["q"]),
             helper.make_node("Where", ["ne", "q", "zero"], ["y"])]
    model = _model(nodes, [("n", F, [2, 4]), ("d", F, [2, 4])], [("y", F, [2, 4])],
                   [("zero", np.float32(0)), ("one", np.float32(1))])
    new, counts = _rewritten(model)
    assert counts == {"Not(Equal(x, 0)) -> Cast(x, bool)": 1}
    assert "Equal" not in _ops(new) and "Not" not in _ops(new) and _ops(new).count("Where") == 2
    n = np.array([[1, 2, 3, 4], [np.nan, 5, 6, -7]], np.float32)
    d = np.array([[0, -0.0, np.inf, np.nan], [2, 0, -np.inf, 1e-40]], np.float32)
    np.testing.assert_array_equal(_run(new, {"n": n, "d": d})[0], _run(model, {"n": n, "d": d})[0])


def test_padding_mask_of_integer_token_ids_becomes_a_bool_cast():
    """A text encoder's padding mask, Not(Equal(ids, 0)) on int32 token ids: Cast(ids → bool) gives the same mask."""
    nodes = [helper.make_node("Equal", ["ids", "pad"], ["eq"]), helper.make_node("Not", ["eq"], ["keep"]),
             helper.make_node("Cast", ["keep"], ["y"], to=F)]
    model = _model(nodes, [("ids", I32, [2, 3])], [("y", F, [2, 3])], [("pad", np.int32(0))])
    new, counts = _rewritten(model)
    assert counts == {"Not(Equal(x, 0)) -> Cast(x, bool)": 1} and "Equal" not in _ops(new)
    ids = np.array([[0, 5, 2], [-1, 0, 8191]], np.int32)
    np.testing.assert_array_equal(_run(new, {"ids": ids})[0], _run(model, {"ids": ids})[0])
    np.testing.assert_array_equal(_run(new, {"ids": ids})[0], [[0, 1, 1], [1, 0, 1]])


def test_where_on_equal_zero_swaps_its_branches():
    nodes = [helper.make_node("Equal", ["x", "zero"], ["eq"]), helper.make_node("Where", ["eq", "a", "b"], ["y"])]
    model = _model(nodes, [("x", F, [3]), ("a", F, [3]), ("b", F, [3])], [("y", F, [3])], [("zero", np.float32(0))])
    new, _ = _rewritten(model)
    assert "Equal" not in _ops(new)
    feeds = {"x": np.array([0, 1, np.nan], np.float32), "a": np.ones(3, np.float32), "b": np.full(3, 2, np.float32)}
    np.testing.assert_array_equal(_run(new, feeds)[0], [1, 2, 2])


def test_mask_comparisons_become_relu_of_the_difference_only_when_they_read_the_mask_alone():
    nodes = [helper.make_node("Greater", ["modality_mask", "half"], ["present"]),
             helper.make_node("Less", ["modality_mask", "half"], ["missing"]),
             helper.make_node("Where", ["present", "x", "zero"], ["kept"]),
             helper.make_node("Where", ["missing", "zero", "kept"], ["y"]),
             helper.make_node("Greater", ["x", "half"], ["big"]),  # reads a data input: a NaN there must stay False
             helper.make_node("Cast", ["big"], ["z"], to=F)]
    model = _model(nodes, [("modality_mask", F, [4, 1]), ("x", F, [4, 3])], [("y", F, [4, 3]), ("z", F, [4, 3])],
                   [("half", np.float32(0.5)), ("zero", np.float32(0))])
    new, counts = _rewritten(model)
    assert counts == {"mask Greater/Less -> Cast(Relu(difference), bool)": 2}
    assert _ops(new).count("Greater") == 1 and "Less" not in _ops(new)
    mask = np.array([[1], [0], [0.5], [np.nextafter(np.float32(0.5), np.float32(1))]], np.float32)
    x = np.array([[np.nan, np.inf, 1], [np.nan, -np.inf, 2], [3, 4, 5], [6, np.nan, 1e30]], np.float32)
    want, got = _run(model, {"modality_mask": mask, "x": x}), _run(new, {"modality_mask": mask, "x": x})
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def test_reductions_reciprocal_min_and_unsqueeze_take_ops_every_ep_lists():
    nodes = [helper.make_node("ReduceSum", ["x", "axis1"], ["s"], keepdims=0),
             helper.make_node("ReduceSum", ["x", "axis2"], ["t"], keepdims=1),
             helper.make_node("ReduceMin", ["x"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Reciprocal", ["t"], ["r"]), helper.make_node("Min", ["r", "cap"], ["c"]),
             helper.make_node("Unsqueeze", ["s", "axis1"], ["u"])]
    model = _model(nodes, [("x", F, [2, 5, 3])], [("u", F, [2, 1, 3]), ("m", F, [2, 1, 3]), ("c", F, [2, 5, 1])],
                   [("axis1", np.array([1], np.int64)), ("axis2", np.array([2], np.int64)), ("cap", np.float32(0.7))])
    new, counts = _rewritten(model)
    assert not {"ReduceSum", "ReduceMin", "Reciprocal", "Min", "Unsqueeze"} & set(_ops(new)), _ops(new)
    assert counts["ReduceSum -> MatMul(x, ones)"] == 2 and counts["Unsqueeze -> Reshape"] == 1
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    for w, g in zip(_run(model, {"x": x}), _run(new, {"x": x})):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(_run(new, {"x": x})[1], _run(model, {"x": x})[1])  # min: exact


def test_embedding_gather_becomes_gathernd_without_the_negative_index_fix_up():
    # tf2onnx's embedding lookup: Where(Less(Cast(ids), 0), ids + n, ids) feeding a Gather on a constant table
    nodes = [helper.make_node("Cast", ["ids"], ["ids_f"], to=F), helper.make_node("Less", ["ids_f", "zero"], ["neg"]),
             helper.make_node("Add", ["ids", "n"], ["wrapped"]), helper.make_node("Where", ["neg", "wrapped", "ids"], ["idx"]),
             helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)]
    table = np.arange(24, dtype=np.float32).reshape(6, 4)
    model = _model(nodes, [("ids", I32, [2, 3])], [("y", F, [2, 3, 4])],
                   [("table", table), ("zero", np.float32(0)), ("n", np.int32(6))])
    new, counts = _rewritten(model)
    assert counts == {"Gather -> GatherND": 1}
    assert set(_ops(new)) == {"Cast", "Reshape", "GatherND"}
    ids = np.array([[0, 5, 2], [-1, 3, -6]], np.int32)
    np.testing.assert_array_equal(_run(new, {"ids": ids})[0], _run(model, {"ids": ids})[0])
    np.testing.assert_array_equal(_run(new, {"ids": ids})[0], table[ids])


def test_the_checker_stops_naming_rewritten_ops_and_the_file_is_left_alone_when_nothing_applies(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "axis"], ["u"]),
             helper.make_node("ReduceSum", ["u", "axis"], ["y"], keepdims=0)]
    model = _model(nodes, [("x", F, [1, 4])], [("y", F, [1, 3])],
                   [("w", np.ones((4, 3), np.float32)), ("b", np.zeros(3, np.float32)), ("axis", np.array([1], np.int64))])
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    before = targets.mobile_usability(path)
    assert "ReduceSum" in before["NNAPI"]["unsupported_ops"]
    assert mobile_graph.rewrite_file(path) == {"ReduceSum -> MatMul(x, ones)": 1, "Unsqueeze -> Reshape": 1}
    after = targets.mobile_usability(path)
    assert {ep: v["verdict"] for ep, v in after.items()} == dict.fromkeys(before, "YES"), after
    plain = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [1, 4])], [("y", F, [1, 4])])
    onnx.save(plain, path)
    stamp = (tmp_path / "m.onnx").read_bytes()
    assert mobile_graph.rewrite_file(path) == {} and (tmp_path / "m.onnx").read_bytes() == stamp


def test_checker_verdict_maybe_is_recorded_as_maybe():
    log = ("INFO:  Checking NNAPI\nINFO:  2 partitions with a total of 90/100 nodes can be handled by the NNAPI EP.\n"
           "INFO:  Unsupported ops: ai.onnx:Where\nINFO:  Model should perform well with NNAPI as is: MAYBE\n")
    assert targets.parse_mobile_usability(log)["NNAPI"] == {"verdict": "MAYBE", "nodes_supported": "90/100",
                                                            "unsupported_ops": ["Where"]}


# Every zoo entry's verdicts (docs/export.md's table) are checked by
# tests/test_export_targets_cli_zoo.py, which exports every entry once through the CLI with `--target ios`.
