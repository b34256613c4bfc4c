"""Every weighting method's float arguments: NaN, ±inf, out-of-range values and non-numbers are refused
with an error that names the argument and the valid range (issue 21: `CAGrad(c=nan)` used to be accepted).

The table below lists each registered method's float arguments and their valid range; a test checks it
against `mk.weighting.names()` and the constructors' signatures, so a new method or a new float argument
has to be added here.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import mtmm_keras as mk

NAN, INF = float("nan"), float("inf")

# {method: {argument: valid range as the error words it}}; "" = any finite number
FLOAT_ARGS = {
    "cagrad": {"c": ">= 0", "norm_eps": ">= 0"},
    "dwa": {"temperature": "> 0"},
    "gradnorm": {"alpha": ">= 0", "learning_rate": "> 0"},
    "imtl": {},
    "mgda": {"epsilon": "> 0"},
    "nash_mtl": {"max_norm": ">= 0"},
    "pcgrad": {},
    "rlw": {},
    "static": {},
    "uncertainty": {"initial_log_variance": ""},
    "upgrad": {"norm_eps": ">= 0", "reg_eps": ">= 0"},  # pref_vector (a sequence of floats): its own test
}
CASES = [(name, arg, bound) for name, args in sorted(FLOAT_ARGS.items()) for arg, bound in args.items()]


def _what(bound: str) -> str:
    return f"a finite number {bound}".rstrip()


def _method_class(name):
    return type(mk.weighting.get(name))


def test_the_table_covers_every_method_and_every_float_argument():
    assert sorted(FLOAT_ARGS) == mk.weighting.names()
    for name in mk.weighting.names():
        params = inspect.signature(_method_class(name).__init__).parameters.values()
        floats = {p.name for p in params if "float" in str(p.annotation) and p.name != "pref_vector"}
        assert floats == set(FLOAT_ARGS[name]), name


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name, arg, bound", CASES)
def test_non_finite_float_arguments_are_refused(name, arg, bound, value):
    message = f"`{arg}` must be {_what(bound)}, got {value!r} (NaN and infinity are not allowed)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        mk.weighting.get(name, **{arg: value})


@pytest.mark.parametrize("name, arg, bound", [case for case in CASES if case[2]])
def test_out_of_range_float_arguments_are_refused(name, arg, bound):
    value = -1.0 if bound == ">= 0" else 0.0
    with pytest.raises(ValueError, match=f"^{re.escape(f'`{arg}` must be {_what(bound)}, got {value!r}.')}$"):
        mk.weighting.get(name, **{arg: value})


@pytest.mark.parametrize("value", ["0.5", True, None, [0.5]], ids=["str", "bool", "None", "list"])
@pytest.mark.parametrize("name, arg, bound", CASES)
def test_non_numbers_are_refused(name, arg, bound, value):
    message = f"`{arg}` must be {_what(bound)}, got {type(value).__name__} {value!r}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        mk.weighting.get(name, **{arg: value})


@pytest.mark.parametrize("name, arg, bound", CASES)
def test_valid_values_are_kept_as_python_floats(name, arg, bound):
    value = {">= 0": 0, "> 0": 1e-9, "": -3}[bound]  # the edge of the range (an int for >= 0 and "")
    for given in (value, np.float32(value) if bound != "> 0" else np.float64(value)):
        method = mk.weighting.get(name, **{arg: given})
        kept = getattr(method, arg)
        assert type(kept) is float and kept == float(given)
        assert method.get_config()[arg] == kept
        assert type(method).from_config(method.get_config()).get_config()[arg] == kept


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_upgrad_pref_vector_entries_must_be_finite(value):
    message = f"`pref_vector[1]` must be a finite number, got {value!r} (NaN and infinity are not allowed)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        mk.weighting.get("upgrad", pref_vector=[1.0, value, 2.0])


def test_upgrad_pref_vector_must_be_a_sequence_of_numbers():
    with pytest.raises(TypeError, match=re.escape("`pref_vector` must be a sequence of finite numbers or None, got 'ab'.")):
        mk.weighting.get("upgrad", pref_vector="ab")
    with pytest.raises(TypeError, match=re.escape("`pref_vector[0]` must be a finite number, got str '1'.")):
        mk.weighting.get("upgrad", pref_vector=["1"])
    with pytest.raises(ValueError, match=re.escape("`pref_vector` must not be empty.")):
        mk.weighting.get("upgrad", pref_vector=[])
    assert mk.weighting.get("upgrad", pref_vector=np.array([1, 2], dtype="float32")).pref_vector == [1.0, 2.0]


def test_cagrad_nan_is_refused_through_a_builder():
    """The issue's example, the way a user writes it: `weighting=mk.weighting.CAGrad(c=nan)`."""
    with pytest.raises(ValueError, match=re.escape("`c` must be a finite number >= 0, got nan")):
        mk.builders.hard_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], weighting=mk.weighting.CAGrad(c=NAN))


def test_register_refuses_a_taken_name_and_accepts_the_same_class_again():
    static = mk.weighting.get("static")
    cls = type(static)
    assert mk.weighting.register("static")(cls) is cls  # the same class again: a no-op (a module reloaded)

    class Impostor(mk.weighting.Weighting):
        pass

    with pytest.raises(ValueError, match="weighting name 'static' is already taken by Static"):
        mk.weighting.register("static")(Impostor)
    assert type(mk.weighting.get("static")) is cls and "static" in mk.weighting.names()


@pytest.mark.parametrize("n_tasks", [0, -1, True, 2.0, "2"])
def test_nash_mtl_refuses_a_bad_task_count(n_tasks):
    with pytest.raises(ValueError, match="`n_tasks` must be a positive integer or None"):
        mk.weighting.NashMTL(n_tasks=n_tasks)


def test_nash_mtl_warns_only_when_optim_niter_is_not_the_default():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mk.weighting.NashMTL(n_tasks=2, optim_niter=20)
    with pytest.warns(UserWarning, match="optim_niter"):
        mk.weighting.NashMTL(n_tasks=2, optim_niter=5)
