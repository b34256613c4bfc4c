"""A model's named inputs and outputs, the sample batch used for verification, and the export-ready clone.

Any Keras model exports: a functional model as it is; a Sequential model (with an `Input`, or built) and a
subclassed model whose input shapes are known (built or called once) through a functional *view*, a
functional model around it with named inputs and named outputs, made with public Keras calls only."""

from __future__ import annotations

import dataclasses
import re
import weakref
from typing import Any

import keras
import numpy as np

from mtmm_keras.layers.modality_mask import MODALITY_MASK

RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN")
# names Keras makes up for an input nobody named: they change from one process to the next, so an
# export names such inputs "input" (or "input_0", "input_1", ...) instead
_AUTO_INPUT_NAME = re.compile(r"^(keras_tensor|input_layer|input)(_\d+)?$")
# a layer computing in one of these dtypes runs under mixed (or low) precision: its artifacts are made from a
# float32 copy of the model
LOW_PRECISION = ("float16", "bfloat16")
# Keras's private record of how a functional model takes its inputs: read only when the public `model.input`
# is missing, and never required (a Keras without it still exports: see `_input_structure`)
_KERAS_INPUTS_STRUCT = "_inputs_struct"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None = dynamic) and dtype of one model input or output."""

    name: str
    shape: tuple
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


# ----------------------------------------------------------------------------------------------------------
# the functional view of any model

_views: "weakref.WeakKeyDictionary[keras.Model, keras.Model]" = weakref.WeakKeyDictionary()
_made: "weakref.WeakSet[keras.Model]" = weakref.WeakSet()  # the views themselves (their names are final)


def _tensor_name(tensor: Any) -> str:
    return tensor.name.split(":")[0]


def _is_functional(model: keras.Model) -> bool:
    """A functional model (keras.Model(inputs, outputs), or a subclass built that way): it has symbolic inputs
    and outputs. Sequential models also have them once built, but take one tensor and are viewed anyway."""
    if isinstance(model, keras.Sequential):
        return False
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def export_view(model: keras.Model) -> keras.Model:
    """`model` as a functional model with stable input names: the model itself when it is functional with
    named inputs, else a functional model around it (same layers and weights, nothing copied).

    Raises ValueError naming what to do when the input signature cannot be known (an unbuilt Sequential or
    subclassed model)."""
    if model in _made or (_is_functional(model) and not any(_AUTO_INPUT_NAME.match(_tensor_name(t)) for t in model.inputs)):
        return model
    try:
        return _views[model]
    except (KeyError, TypeError):
        pass
    if _is_functional(model):
        view = _wrap_functional(model)
    elif isinstance(model, keras.Sequential):
        view = _wrap_sequential(model)
    else:
        view = _wrap_subclassed(model)
    _made.add(view)
    try:
        _views[model] = view
    except TypeError:  # not weak-referenceable: a fresh view next time
        pass
    return view


def _view_name(model: keras.Model) -> str:
    """`model.name` as TensorFlow accepts a root name scope (a class `_Model` is auto-named '__model')."""
    return re.sub(r"^[^A-Za-z0-9.]+", "", model.name) or "model"


def _input_names(count: int) -> list[str]:
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def _clean_names(tensors) -> list[str]:
    names = [_tensor_name(t) for t in tensors]
    fresh = _input_names(len(names))
    return [fresh[i] if _AUTO_INPUT_NAME.match(name) else name for i, name in enumerate(names)]


def _named_outputs(outputs: Any, default_names: list[str]) -> dict[str, Any]:
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        names = default_names if len(default_names) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
        return dict(zip(names, outputs))
    return {default_names[0] if default_names else "output_0": outputs}


def _wrap_functional(model: keras.Model) -> keras.Model:
    """A functional model some of whose inputs carry a made-up name: the same model under stable names."""
    names = _clean_names(model.inputs)
    fresh = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=n) for t, n in zip(model.inputs, names)]
    by_name = {_tensor_name(t): f for t, f in zip(model.inputs, fresh)}
    outputs = model(keras.tree.map_structure(lambda t: by_name[_tensor_name(t)], _input_structure(model)))
    return keras.Model(fresh, _named_outputs(outputs, _functional_output_names(model)), name=_view_name(model))


def _wrap_sequential(model: keras.Sequential) -> keras.Model:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"Sequential model {model.name!r} has no input shape yet, so the exported artifacts' input signature is "
            "unknown: start it with an Input (keras.Sequential([keras.Input(shape=(4,)), ...])), or build it first "
            "with model.build((None, 4)) (or call it once on a batch), then export.")
    (spec,) = inputs
    (name,) = _clean_names(inputs)
    x = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=name)
    last = model.layers[-1].name if model.layers else "output_0"
    return keras.Model(x, _named_outputs(model(x), [last]), name=_view_name(model))


def _wrap_subclassed(model: keras.Model) -> keras.Model:
    build_config = model.get_build_config() if getattr(model, "built", False) else None
    shapes = (build_config or {}).get("input_shape") if build_config and len(build_config) == 1 else None
    arguments = None
    if build_config and len(build_config) > 1 and all(k.endswith("_shape") for k in build_config):
        arguments = {k[: -len("_shape")]: v for k, v in build_config.items()}  # call(self, a, b): one shape per argument
    if shapes is None and arguments is None:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}, a subclassed keras.Model) has no known input signature: "
            "call it once on a batch of real inputs (model(x)) or build it (model.build(input_shape)) before exporting, "
            "or export a functional model (keras.Model(inputs, outputs)) that wraps it.")

    def as_input(shape, name):
        if not isinstance(shape, (list, tuple)) or not all(d is None or isinstance(d, int) for d in shape):
            raise ValueError(f"Model {model.name!r}: cannot read an input shape from its build config {build_config}; "
                             "export a functional model (keras.Model(inputs, outputs)) that wraps it.")
        return keras.Input(shape=tuple(shape[1:]), name=name)  # Keras records shapes only: float32 inputs

    if arguments is not None:
        symbolic = {arg: as_input(shape, arg) for arg, shape in arguments.items()}
        flat = list(symbolic.values())
    elif isinstance(shapes, dict):
        symbolic = {key: as_input(shape, key) for key, shape in shapes.items()}
        flat = list(symbolic.values())
    elif isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        symbolic = [as_input(shape, name) for shape, name in zip(shapes, _input_names(len(shapes)))]
        flat = symbolic
    else:
        symbolic = as_input(shapes, "input")
        flat = [symbolic]
    try:
        outputs = model(**symbolic) if arguments is not None else model(symbolic)
    except Exception as err:  # noqa: BLE001 - the model's own call cannot run on symbolic float32 inputs
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}, a subclassed keras.Model) could not be traced on float32 "
            f"inputs of the shapes it was built with ({build_config}): {type(err).__name__}: {str(err).splitlines()[0][:200]}. "
            "Export a functional model (keras.Model(inputs, outputs)) that wraps it, with keras.Input(..., dtype=...) "
            "giving each input's dtype.") from None
    return keras.Model(flat if len(flat) > 1 else flat[0], _named_outputs(outputs, []), name=_view_name(model))


def _input_structure(model: keras.Model) -> Any:
    """How a functional model takes its inputs (one tensor, a list, a dict): the public `model.input` first,
    then Keras's private `_inputs_struct`, else rebuilt from `model.inputs` (a dict by name, or the one tensor)."""
    try:
        struct = model.input
    except (AttributeError, ValueError):
        struct = None
    if struct is None:
        struct = getattr(model, _KERAS_INPUTS_STRUCT, None)
    if struct is None:  # by name: Keras matches a dict to a functional model's inputs by their names
        struct = model.inputs[0] if len(model.inputs) == 1 else {_tensor_name(t): t for t in model.inputs}
    return struct


def input_infos(model: keras.Model, batch_size: int | None = None) -> list[TensorInfo]:
    """Name, shape (batch `batch_size`) and dtype of each input of `model`'s functional view. Raises ValueError,
    naming the input and what each format takes, for string, ragged and sparse inputs."""
    view = export_view(model)
    names = [_tensor_name(t) for t in view.inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"The model's inputs need unique names to be exported, got {names}.")
    for name, tensor in zip(names, view.inputs):
        _check_exportable_input(name, tensor)
    return [TensorInfo(n, (batch_size,) + tuple(t.shape[1:]), str(t.dtype)) for n, t in zip(names, view.inputs)]


def _check_exportable_input(name: str, tensor: Any) -> None:
    dtype = str(tensor.dtype)
    kind = ("string" if dtype == "string" else "ragged" if getattr(tensor, "ragged", False)
            else "sparse" if getattr(tensor, "sparse", False) else None)
    if kind is None:
        return
    what = f"a {kind} tensor" + (f" (dtype {dtype})" if kind != "string" else "")
    remedy = ("keep the text preprocessing (TextVectorization, StringLookup, ...) outside the artifact: export a "
              "model that takes its integer token ids (keras.Input(shape=(length,), dtype='int32')) and run the "
              "vectorization in the application" if kind == "string" else
              "pad the input to a dense tensor of fixed length (with a mask input if needed) and export that model")
    raise ValueError(
        f"The model's input {name!r} is {what}; export takes dense numeric inputs only. saved_model: dense numeric "
        f"tensors (serve strings or ragged tensors with model.export(), which this tool neither writes nor verifies); "
        f"tflite: dense numeric tensors (TextVectorization/StringLookup and ragged ops are not LiteRT built-ins); "
        f"onnx: dense numeric tensors (tf2onnx converts no string lookup or ragged ops). Remedy: {remedy}. "
        "Nothing was written.")


def output_names(model: keras.Model) -> list[str]:
    return _functional_output_names(export_view(model))


def _functional_output_names(model: keras.Model) -> list[str]:
    if isinstance(model.output, dict):
        return list(model.output)
    return list(model.output_names)


def call_with_named_inputs(model: keras.Model, named: dict[str, Any]) -> dict[str, Any]:
    """Call `model` on a {input name: tensor} dict and return {output name: tensor}, whatever its structure."""
    view = export_view(model)
    args = keras.tree.map_structure(lambda t: named[_tensor_name(t)], _input_structure(view))
    outputs = view(args, training=False)
    return _named_outputs(outputs, output_names(view))




def presence_patterns(rows: int, modalities: int, dtype: str = "float32") -> np.ndarray:
    """`[rows, modalities]` 0/1 masks cycling through every modality present, then each one missing in turn:
    what `export_model` feeds a fused model whose `modality_mask` the caller left out, so int8 calibration sees
    both 0 and 1 and verification covers each missing modality."""
    patterns = np.ones((modalities + 1, modalities), dtype=dtype)
    patterns[1:][np.arange(modalities), np.arange(modalities)] = 0
    return patterns[np.arange(rows) % len(patterns)]


# ----------------------------------------------------------------------------------------------------------
# random inputs in the range each input's first layer expects

def sample_inputs(model: keras.Model, num_samples: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed random batch matching the model's inputs, each drawn in the range the layer that reads it expects
    (see `sample_ranges`): random numbers far outside it (white noise for a waveform, 0/1 for pixels) judge an
    artifact on inputs the model never sees, where rounding differences are not those of real rows."""
    rng = np.random.default_rng(seed)
    view = export_view(model)
    rules = _input_rules(view)
    batch = {}
    for info in input_infos(view):
        shape = (num_samples,) + tuple(d or 1 for d in info.shape[1:])
        batch[info.name] = rules[info.name][1](rng, shape).astype(info.dtype)
    return batch


def sample_ranges(model: keras.Model) -> dict[str, str]:
    """{input name: how `sample_inputs` draws it}, for the export report."""
    return {name: rule[0] for name, rule in _input_rules(export_view(model)).items()}


def _input_rules(view: keras.Model) -> dict[str, tuple[str, Any]]:
    vocab = min((layer.input_dim for layer in _all_layers(view) if isinstance(layer, keras.layers.Embedding)), default=2)
    rules = {}
    for tensor in view.inputs:
        name, dtype = _tensor_name(tensor), str(tensor.dtype)
        row_shape = tuple(tensor.shape[1:])
        rule = None
        if name == MODALITY_MASK:  # a fusion model's presence mask: each modality missing in turn
            rule = ("presence patterns (0/1: all present, then each modality missing in turn)",
                    lambda rng, shape: presence_patterns(shape[0], shape[-1]).reshape(shape))
        else:
            for layer in _first_consumers(view, tensor):
                rule = _rule_for(layer, dtype, row_shape)
                if rule is not None:
                    break
        if rule is None and dtype == "uint8":
            rule = ("uint8 values in [0, 255]", lambda rng, shape: rng.integers(0, 256, size=shape))
        if rule is None and dtype == "bool":
            rule = ("0/1", lambda rng, shape: rng.integers(0, 2, size=shape))
        if rule is None and "int" in dtype:
            rule = (f"integers in [0, {vocab - 1}] (below the smallest Embedding vocabulary)",
                    lambda rng, shape, vocab=vocab: rng.integers(0, vocab, size=shape))
        if rule is None:
            rule = ("standard normal (no layer that reads it tells its range)", lambda rng, shape: rng.normal(size=shape))
        rules[name] = rule
    return rules


def _rule_for(layer, dtype: str, row_shape: tuple):
    """How to draw the input of `layer` (None: this layer does not tell)."""
    class_name = type(layer).__name__
    if isinstance(layer, keras.layers.Embedding):
        dim = int(layer.input_dim)
        return f"integers in [0, {dim - 1}] (Embedding vocabulary)", lambda rng, shape: rng.integers(0, dim, size=shape)
    if isinstance(layer, keras.layers.Rescaling):
        try:
            scale, offset = np.asarray(layer.scale, "float64"), np.asarray(layer.offset, "float64")
            low, high = (-1.0, 1.0) if np.all(offset < 0) else (0.0, 1.0)  # Rescaling maps onto [0, 1] or [-1, 1]
            bounds = np.sort(np.stack(np.broadcast_arrays((low - offset) / scale, (high - offset) / scale)), axis=0)
        except (TypeError, ValueError, ZeroDivisionError, FloatingPointError):
            return None
        if not np.all(np.isfinite(bounds)):
            return None
        lo, hi = float(bounds[0].min()), float(bounds[1].max())
        if "int" in dtype:
            return (f"integers in [{lo:g}, {hi:g}] ({layer.name}: Rescaling to [{low:g}, {high:g}])",
                    lambda rng, shape: rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1, size=shape))
        return (f"uniform in [{lo:g}, {hi:g}] ({layer.name}: Rescaling to [{low:g}, {high:g}])",
                lambda rng, shape: rng.uniform(lo, hi, size=shape))
    if "Spectrogram" in class_name:  # LogMelSpectrogram, keras.layers.MelSpectrogram, STFTSpectrogram: a waveform
        rate = next((int(getattr(layer, a)) for a in ("sample_rate", "sampling_rate") if getattr(layer, a, None)), 16_000)
        return (f"waveforms in [-1, 1]: harmonic tones in silence ({layer.name}: {class_name}; white noise would "
                "give a flat spectrum that a per-example standardisation blows up)",
                lambda rng, shape: _tone_bursts(rng, shape, rate))
    mean, variance = getattr(layer, "mean", None), getattr(layer, "variance", None)
    if mean is not None and variance is not None and not getattr(layer, "invert", False) and "float" in dtype:
        try:
            mean = np.asarray(keras.ops.convert_to_numpy(mean), "float64")
            std = np.sqrt(np.maximum(np.asarray(keras.ops.convert_to_numpy(variance), "float64"), 0.0))
            np.broadcast_shapes(mean.shape, std.shape, (1,) + tuple(d or 1 for d in row_shape))
        except Exception:  # noqa: BLE001 - statistics that are not arrays of the input's shape say nothing
            return None
        return (f"normal with the mean and variance of {layer.name} ({class_name})",
                lambda rng, shape: mean + std * rng.normal(size=shape))
    return None


def _tone_bursts(rng, shape, sample_rate: int) -> np.ndarray:
    """`[rows, ..., samples]` waveforms peaking at ±1: a harmonic tone (80-300 Hz fundamental) under a Hann
    envelope over part of the clip, silence (1e-3 noise) elsewhere: loud and quiet frames, as in speech."""
    samples = shape[-1]
    flat = int(np.prod(shape[:-1]))
    t = np.arange(samples) / sample_rate
    waves = np.empty((flat, samples))
    for i in range(flat):
        f0 = rng.uniform(80.0, 300.0)
        tone = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
                   for h in range(1, 9) if f0 * h < sample_rate / 2)
        length = int(rng.integers(max(1, samples // 4), max(2, samples // 2 + 1)))
        start = int(rng.integers(0, max(1, samples - length + 1)))
        envelope = np.zeros(samples)
        envelope[start:start + length] = np.hanning(length)
        wave = tone * envelope + rng.normal(scale=1e-3, size=samples)
        waves[i] = wave / max(float(np.abs(wave).max()), 1e-12)
    return waves.reshape(shape)


def _first_consumers(model: keras.Model, tensor: Any, depth: int = 0) -> list:
    """The layers that read `tensor` (one of `model`'s inputs) first, looking inside nested models.

    A plain layer reads it when its `input` is that tensor. A nested model's `input` is its own input tensor,
    so a nested model is followed into through its input of the same name (the builders' encoders name their
    input after the modality), or its only input when `model` itself has a single input."""
    if depth > 8 or tensor is None:
        return []
    if isinstance(model, keras.Sequential):
        first = model.layers[:1]
        if first and isinstance(first[0], keras.Model):
            return _first_consumers(first[0], _inner_input(first[0], tensor, True), depth + 1) or first
        return first
    found = []
    single = len(model.inputs) == 1
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            inner = _inner_input(layer, tensor, single)
            if inner is not None:
                found.extend(_first_consumers(layer, inner, depth + 1) or [layer])
            continue
        try:
            flat = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError, TypeError):
            continue
        if any(candidate is tensor for candidate in flat):
            found.append(layer)
    return found


def _inner_input(nested: keras.Model, tensor: Any, single: bool) -> Any:
    """The input of `nested` that `tensor` feeds: same name, or its only input when the outer model has one."""
    try:
        inner = list(nested.inputs)
    except (AttributeError, ValueError):
        return None
    same = [t for t in inner if _tensor_name(t) == _tensor_name(tensor)]
    if same:
        return same[0]
    return inner[0] if single and len(inner) == 1 else None


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# ----------------------------------------------------------------------------------------------------------
# the export-ready clone

def low_precision_policies(model: keras.Model) -> list[str]:
    """The dtype policies of the layers of `model` that compute in float16 or bfloat16 (mixed precision)."""
    return sorted({layer.dtype_policy.name for layer in _all_layers(model)
                   if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) in LOW_PRECISION})


class FlatIndexEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` that looks up 1-D indices: ids `[batch, d1, ...]` are flattened, gathered and
    reshaped back to `[batch, d1, ..., output_dim]`. Same weights, same config, identical outputs; its TFLite
    graph is RESHAPE → GATHER (1-D indices) → RESHAPE, which LiteRT's GPU accelerator runs (it refuses a GATHER
    with 2-D indices). Used only inside the export-ready clone of a static-batch export (see `export_clone`):
    never saved, so not registered."""

    def call(self, inputs):
        inner = tuple(inputs.shape[1:])
        if self.quantization_mode is not None or len(inner) == 0 or any(d is None for d in inner):
            return super().call(inputs)
        if inputs.dtype != "int32" and inputs.dtype != "int64":
            inputs = keras.ops.cast(inputs, "int32")
        flat = keras.ops.take(self.embeddings, keras.ops.reshape(inputs, (-1,)), axis=0)
        return keras.ops.cast(keras.ops.reshape(flat, (-1,) + inner + (self.output_dim,)), dtype=self.compute_dtype)


def _multi_index_embeddings(model: keras.Model) -> bool:
    """Whether an Embedding of `model` reads ids of rank 2 or more (`[batch, sequence]`): a GATHER with 2-D indices."""
    for layer in _all_layers(model):
        if type(layer) is keras.layers.Embedding and getattr(layer, "quantization_mode", None) is None:
            try:
                shapes = [t.shape for t in keras.tree.flatten(layer.input)]
            except (AttributeError, ValueError, TypeError):
                continue
            if any(len(shape) >= 2 for shape in shapes):
                return True
    return False


def export_clone(model: keras.Model, flat_embeddings: bool = False) -> keras.Model:
    """The same model and weights, rebuilt so its graph exports everywhere.

    Recurrent layers are unrolled (no TensorList while-loop: no Flex ops with a dynamic batch,
    and full-integer calibration works) and never use cuDNN kernels (a model built on a GPU
    exports for CPU and edge). Layers under a mixed-precision (or float16/bfloat16) dtype policy compute
    in float32 in the clone: float16 internals make TFLite refuse the graph, break ONNX verification and
    bfloat16 ONNX does not load in ONNX Runtime; `quantize="float16"` makes the float16 artifact.
    With `flat_embeddings` (a static-batch export), every `keras.layers.Embedding` becomes a
    `FlatIndexEmbedding` (1-D indices for its GATHER, which LiteRT's GPU accelerator needs; same outputs).
    Models with none of these are returned as they are.
    """
    recurrent = any(type(layer).__name__ in RECURRENT_LAYERS for layer in _all_layers(model))
    low_precision = low_precision_policies(model)
    flat_embeddings = flat_embeddings and _multi_index_embeddings(model)
    if not recurrent and not low_precision and not flat_embeddings:
        return model
    try:
        config = keras.saving.serialize_keras_object(model)
        _patch_recurrent(config)
        _patch_dtype_policies(config)
        if flat_embeddings:
            _patch_embeddings(config)
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")  # layers that leave `dtype` out of their config
        try:
            with keras.saving.custom_object_scope({FlatIndexEmbedding.__name__: FlatIndexEmbedding}):
                clone = keras.saving.deserialize_keras_object(config)
        finally:
            keras.config.set_dtype_policy(previous)
        clone.set_weights([np.asarray(w, "float32") if np.asarray(w).dtype.kind == "f" else w for w in model.get_weights()])
    except Exception as err:  # noqa: BLE001 - a model that cannot be rebuilt from its config
        if not low_precision:
            raise
        raise ValueError(
            f"Model {model.name!r} computes in {', '.join(low_precision)}; its artifacts are made from a float32 copy, "
            f"but it cannot be rebuilt from its config ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "Rebuild it under keras.config.set_dtype_policy('float32'), load its weights (save_weights / load_weights) "
            "and export that model (quantize='float16' gives a float16 TFLite artifact).") from None
    return clone


def _patch_dtype_policies(node: Any) -> None:
    """Every serialized DTypePolicy computing in float16/bfloat16 becomes float32 (quantized policies are left)."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if (key == "dtype" and isinstance(value, dict) and value.get("class_name") == "DTypePolicy"
                    and str(value.get("config", {}).get("name", "")).replace("mixed_", "") in LOW_PRECISION):
                node[key] = "float32"
            elif key == "dtype" and value in ("mixed_float16", "mixed_bfloat16"):
                node[key] = "float32"
            else:
                _patch_dtype_policies(value)
    elif isinstance(node, list):
        for value in node:
            _patch_dtype_policies(value)


def _patch_embeddings(node: Any) -> None:
    """Every serialized `keras.layers.Embedding` becomes a `FlatIndexEmbedding` (same config)."""
    if isinstance(node, dict):
        if node.get("class_name") == "Embedding" and node.get("module") in ("keras.layers", "keras.src.layers"):
            node.update(module=None, class_name=FlatIndexEmbedding.__name__, registered_name=FlatIndexEmbedding.__name__)
        for value in node.values():
            _patch_embeddings(value)
    elif isinstance(node, list):
        for value in node:
            _patch_embeddings(value)


def _patch_recurrent(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("class_name") in RECURRENT_LAYERS and isinstance(node.get("config"), dict):
            node["config"]["unroll"] = True
            if node["class_name"] in ("LSTM", "GRU"):  # get_config omits it; the constructor takes it
                node["config"]["use_cudnn"] = False
        for value in node.values():
            _patch_recurrent(value)
    elif isinstance(node, list):
        for value in node:
            _patch_recurrent(value)
