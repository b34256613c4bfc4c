"""The float32 verification rule: |Δ| ≤ atol + rtol · (the largest |value| of the element's row)."""

import numpy as np

from mtmm_keras.export import verify


def _check(reference, got):
    return verify.check_output("out", np.asarray(reference, "float32"), np.asarray(got, "float32"), "float32",
                               ("continuous", False))


def test_small_value_beside_large_ones_is_judged_on_the_row_scale():
    reference = [[-0.30, 8.0, -6.0]]
    assert _check(reference, [[-0.30 + 2.1e-5, 8.0, -6.0]]).passed          # allowed 1e-5 + 8e-5
    assert not _check(reference, [[-0.30 + 2e-4, 8.0, -6.0]]).passed


def test_each_row_has_its_own_scale():
    reference = [[0.1, 0.2], [10.0, 0.0]]
    assert _check(reference, [[0.1, 0.2], [10.0, 1e-4]]).passed             # row 2: 1e-5 + 1e-4
    failed = _check(reference, [[0.1, 0.2 + 5e-5], [10.0, 0.0]])             # row 1: 1e-5 + 2e-6
    assert not failed.passed and "row's largest |value|" in failed.reason


def test_row_scale_shapes():
    np.testing.assert_array_equal(verify.row_scale(np.array([[1.0, -3.0], [0.5, 0.2]])), [[3.0], [0.5]])
    np.testing.assert_array_equal(verify.row_scale(np.array([-2.0, 1.0])), [2.0, 1.0])
    assert verify.row_scale(np.zeros((2, 3, 4))).shape == (2, 1, 1)
