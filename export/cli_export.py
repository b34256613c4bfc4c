"""`mtmm export`: load a model safely, export and verify it, print the table, exit non-zero on failure."""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np


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
    import keras

    try:
        with warnings.catch_warnings():  # "skipping optimizer variables" for models saved before training
            warnings.simplefilter("ignore", UserWarning)
            return keras.models.load_model(source, safe_mode=True)
    except Exception as err:
        raise ValueError(f"could not load {source!r} as a Keras model: {str(err).splitlines()[0]}") from None


def load_calibration(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--calibration-data {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as err:
        raise ValueError(f"--calibration-data {path!r} is not a readable .npz of arrays: {err}") from None


def run(args: argparse.Namespace) -> int:
    from mtmm_keras import builders
    from mtmm_keras.export import ExportVerificationError, export_model, export_towers

    model = load_source(args.source)
    if args.with_attention:
        model = builders.with_attention_output(model)
    kwargs = dict(
        formats=args.format,
        quantize=args.quantize,
        representative_data=load_calibration(args.calibration_data),
        batch_size=args.batch_size,
        allow_flex=args.allow_flex,
    )
    try:
        export_model(model, args.out, **kwargs)
        if args.per_tower:
            export_towers(model, os.path.join(args.out, "towers"), **kwargs)
    except ExportVerificationError as err:
        print(err.report.table())
        print(f"nothing was written to {args.out}")
        return 1
    return 0
