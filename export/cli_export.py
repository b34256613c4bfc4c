"""`mtmm export`: load a model safely, export and verify it, print the table, exit non-zero on failure."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
import warnings
import zipfile

import numpy as np

LABEL_PREFIX = "label:"
# The flag of each `export_model` argument: the library's errors name its arguments (`representative_data` ...);
# the CLI re-words them with these flags (`with_flags`), in this one place.
ARGUMENT_FLAGS = {
    "representative_data": "--calibration-data",
    "validation_data": "--validation-data",
    "formats": "--format",
    "quantize": "--quantize",
    "batch_size": "--batch-size",
    "allow_flex": "--allow-flex",
    "per_tower": "--per-tower",
    "out_dir": "--out",
    "overwrite": "--force",
    "target": "--target",
}
# wording about Python values that reads differently on the command line
CLI_PHRASES = {"({input name: array})": "(an .npz with one array per model input)"}
_BACKTICKED = re.compile(r"`(" + "|".join(ARGUMENT_FLAGS) + r")((?:\[[^\]`]*\])*)`")
_SWITCHED_ON = re.compile(r"\b(" + "|".join(ARGUMENT_FLAGS) + r")=True\b(?: \((?:CLI: )?--[a-z-]+(?: \d+)?\))?")


def with_flags(message: str) -> str:
    """A library error as the CLI says it: `representative_data` -> `--calibration-data`,
    `representative_data['x']` -> `--calibration-data` array 'x', allow_flex=True -> --allow-flex."""
    def backticked(match):
        name, index = match.group(1), match.group(2)
        if name == "validation_data" and index.startswith("[0]"):  # (x, y): x holds the inputs
            index = index[3:]
        keys = re.findall(r"\[([^\]]*)\]", index)
        return f"`{ARGUMENT_FLAGS[name]}`" + "".join(f" array {key}" for key in keys)

    message = _BACKTICKED.sub(backticked, message)
    message = _SWITCHED_ON.sub(lambda match: ARGUMENT_FLAGS[match.group(1)], message)
    for phrase, cli in CLI_PHRASES.items():
        message = message.replace(phrase, cli)
    return message


def import_modules(names) -> None:
    """--import: each module name (searched on the Python path and in the current folder) or .py file, imported
    before the model is loaded so that the classes it registers with Keras are known."""
    for name in names or ():
        if name.endswith(".py"):
            path = os.path.abspath(name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--import {name!r}: no such file.")
            module_name = os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            runner = lambda: spec.loader.exec_module(module)  # noqa: E731
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())  # like `python -m`: a module beside the user is found
            runner = lambda name=name: importlib.import_module(name)  # noqa: E731
        try:
            runner()
        except ModuleNotFoundError as err:
            if err.name and (name == err.name or name.startswith(err.name + ".")):
                raise ValueError(f"--import {name!r}: no module of that name on the Python path (searched: the current "
                                 "folder and PYTHONPATH); give the module's name as you would import it in Python, or "
                                 "the path of its .py file.") from None
            raise ImportError(f"--import {name!r} failed: {err}") from err
        except Exception as err:  # noqa: BLE001 - the user's module failed while importing: say which and why
            raise ImportError(f"--import {name!r} failed while importing: {type(err).__name__}: {err}") from err


def _missing_custom_object(err: BaseException) -> tuple[str, str] | None:
    """("class" | "function", name) when loading failed on a custom object not registered in this process."""
    texts, seen = [], 0
    while err is not None and seen < 10:
        texts.append(str(err))
        err, seen = err.__cause__ or err.__context__, seen + 1
    match = re.search(r"Could not locate (class|function) '([^']+)'", "\n".join(texts))
    return (match.group(1), match.group(2)) if match else None


def _custom_object_origin(source: str, name: str) -> tuple[str | None, str | None]:
    """(module, registered name) of the custom object `name` in the .keras file's config.json, if recorded."""
    try:
        with zipfile.ZipFile(source) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None, None
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == name or node.get("registered_name") == name:
                return node.get("module"), node.get("registered_name")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None, None


def load_source(source: str):
    """A .keras file (loaded with safe_mode=True) or a zoo entry given as zoo:NAME."""
    if source.startswith("zoo:"):
        from mtmm_keras import zoo

        if not hasattr(zoo, "load"):
            raise ValueError(f"{source}: the model zoo has no entries in this version.")
        return zoo.load(source[4:], pretrained=True)
    if not source.endswith(".keras"):
        raise ValueError(f"SOURCE must be a .keras file or zoo:NAME, got {source!r}.")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"SOURCE {source!r} does not exist.")
    from mtmm_keras.saving import load_keras_file

    try:
        with warnings.catch_warnings():  # "skipping optimizer variables" for models saved before training
            warnings.simplefilter("ignore", UserWarning)
            return load_keras_file(source, safe_mode=True)  # checks the archive first; errors name the file
    except ValueError as err:
        missing = _missing_custom_object(err)
        if missing is None:
            raise
        kind, name = missing
        module, registered = _custom_object_origin(source, name)
        where = f" (registered as {registered!r}, defined in module {module!r})" if module and registered else ""
        module_hint = module if module and module != "__main__" else "MODULE"
        raise ValueError(
            f"{source!r} uses the custom {kind} {name!r}{where}, which is not registered in this process: pass "
            f"--import {module_hint} (the module that defines it with @keras.saving.register_keras_serializable; "
            "repeatable; a .py file path works too) so it loads.") from None


def load_arrays(path: str | None, option: str) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file given as `option` (no pickle), or None when the option was not given."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option} {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{option} {path!r} is not a readable .npz of arrays ({err}); write one with "
                         "numpy.savez(path, **{input_name: array}).") from None


def split_validation(arrays: dict[str, np.ndarray] | None) -> tuple | None:
    """--validation-data: inputs under their names, labels under "label:<output>" (optional)."""
    if arrays is None:
        return None
    x = {k: v for k, v in arrays.items() if not k.startswith(LABEL_PREFIX)}
    y = {k[len(LABEL_PREFIX):]: v for k, v in arrays.items() if k.startswith(LABEL_PREFIX)}
    return (x, y) if y else (x,)


def zoo_data(source: str, model) -> tuple[dict | None, tuple | None]:
    """A zoo entry's own rows: calibration from its train split, held-out checks on its test split."""
    from mtmm_keras.export import _model_io
    from mtmm_keras.zoo import evaluation, registry

    recipe = registry.recipe(source[len("zoo:"):])
    x_train, _ = evaluation.split_arrays(recipe, "train", limit=256)
    x_test, y_test = evaluation.split_arrays(recipe, "test", limit=1024)
    names = [info.name for info in _model_io.input_infos(model)]
    outputs = _model_io.output_names(model)
    labels = {k: v for k, v in y_test.items() if k in outputs}
    # a fused entry's `modality_mask` is not in its data: export_model fills it with presence patterns
    train = {k: x_train[k] for k in names if k in x_train}
    test = {k: x_test[k] for k in names if k in x_test}
    return train, ((test, labels) if labels else (test,))


def run(args: argparse.Namespace) -> int:
    """`mtmm export`; errors the library raises about its arguments name the CLI flags (`with_flags`)."""
    try:
        return _run(args)
    except (ValueError, TypeError) as err:
        if err.args and isinstance(err.args[0], str):
            err.args = (with_flags(err.args[0]),) + err.args[1:]
        raise


def _run(args: argparse.Namespace) -> int:
    from mtmm_keras import builders
    from mtmm_keras.export import ExportVerificationError, api, export_model

    # every argument is read and checked before anything is written
    api.check_out_dir(args.out, overwrite=args.force, argument="--out")
    target = getattr(args, "target", None) or "server"
    api.check_options(args.format, args.quantize, args.batch_size, target=target)
    import_modules(getattr(args, "imports", None))
    model = load_source(args.source)
    if args.with_attention:
        model = builders.with_attention_output(model)
    representative = load_arrays(args.calibration_data, "--calibration-data")
    validation = split_validation(load_arrays(args.validation_data, "--validation-data"))
    if args.source.startswith("zoo:") and (representative is None or validation is None):
        zoo_representative, zoo_validation = zoo_data(args.source, model)
        representative = zoo_representative if representative is None else representative
        validation = zoo_validation if validation is None else validation
    try:
        export_model(model, args.out, formats=args.format, quantize=args.quantize, representative_data=representative,
                     validation_data=validation, batch_size=args.batch_size, allow_flex=args.allow_flex,
                     overwrite=args.force, per_tower=args.per_tower, target=target)
    except ExportVerificationError as err:
        print(err.report.table())
        print(f"verification failed: nothing was written to {args.out}")
        return 1
    return 0
