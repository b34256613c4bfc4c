"""`mtmm export`: load a model safely, export and verify it, print the table, exit non-zero on failure."""

from __future__ import annotations

import argparse
import os
import warnings
import zipfile

import numpy as np

LABEL_PREFIX = "label:"


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

    with warnings.catch_warnings():  # "skipping optimizer variables" for models saved before training
        warnings.simplefilter("ignore", UserWarning)
        return load_keras_file(source, safe_mode=True)  # checks the archive first; errors name the file


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
    return {k: x_train[k] for k in names}, (({k: x_test[k] for k in names}, labels) if labels else ({k: x_test[k] for k in names},))


def run(args: argparse.Namespace) -> int:
    from mtmm_keras import builders
    from mtmm_keras.export import ExportVerificationError, api, export_model

    # every argument is read and checked before anything is written
    api.check_out_dir(args.out, overwrite=args.force, argument="--out")
    api.check_options(args.format, args.quantize, args.batch_size)
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
                     overwrite=args.force, per_tower=args.per_tower)
    except ExportVerificationError as err:
        print(err.report.table())
        print(f"verification failed: nothing was written to {args.out}")
        return 1
    return 0
