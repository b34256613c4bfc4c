"""Public API of the offline datasets: prepare once, then load as (x, y) tf.data pipelines or numpy arrays.

TensorFlow and TensorFlow Datasets are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import numpy as np

from mtmm_keras import _checks
from mtmm_keras.data import registry

_SHUFFLE_BUFFER = 10_000


def _check_data_dir(data_dir: Any) -> None:
    """Refuse a `data_dir` that is not a usable folder path (None means the default folder)."""
    if data_dir is None:
        return
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"`data_dir` must be a folder path (str or os.PathLike) or None, got {type(data_dir).__name__} {data_dir!r}.")
    text = os.fsdecode(data_dir)
    if not text.strip():
        raise ValueError(
            f"`data_dir` is empty ({data_dir!r}); it would put the dataset in the current folder. Pass a folder "
            f"path, or None for ${registry.DATA_DIR_ENV} (else {registry.DEFAULT_DATA_DIR})."
        )
    if os.path.exists(text) and not os.path.isdir(text):
        raise ValueError(f"`data_dir` {text!r} is a file, not a folder; pass the folder that holds (or will hold) the datasets.")


def _rebuild_hint(name: str, folder: str, config: str | None) -> str:
    return (f"Delete the folder {folder!r} and run mk.data.prepare({name!r}"
            + (f", config={config!r}" if config else "") + ") again to rebuild it.")


def _builder(name: str, data_dir: str | os.PathLike | None, config: str | None) -> Any:
    _check_data_dir(data_dir)
    cls = registry.builder_class(name)
    config = cls.DEFAULT_CONFIG_NAME if config is None else config
    if config not in cls.builder_configs:
        raise ValueError(f"Unknown config {config!r} for dataset {name!r}. Valid configs: {sorted(cls.builder_configs)}.")
    root = registry.resolve_data_dir(data_dir)
    try:
        return cls(data_dir=root, config=config)
    except Exception as err:  # noqa: BLE001 - a damaged dataset_info.json / features.json of a prepared folder
        folder = os.path.join(root, name, config, str(cls.VERSION))
        if not os.path.isdir(folder):
            raise
        raise ValueError(
            f"The prepared dataset {name}/{config} in {folder!r} is damaged: its metadata "
            f"(dataset_info.json / features.json) cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            + _rebuild_hint(name, folder, config)
        ) from err


def _check_prepared_files(builder: Any, name: str, split: str) -> None:
    """Refuse a prepared split whose record files are missing or shorter than the bytes TFDS recorded."""
    try:
        split_info = builder.info.splits[split]
        paths = [str(p) for p in split_info.filepaths]
    except Exception:  # noqa: BLE001 - unknown split names etc.: TFDS reports them itself
        return
    folder, config = str(builder.data_dir), builder.builder_config.name
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"The prepared dataset {name}/{config} in {folder!r} is incomplete: {missing} missing. "
            + _rebuild_hint(name, folder, config)
        )
    if split in builder.info.splits.keys():  # a whole split: its files hold at least `num_bytes` of records
        recorded = int(getattr(split_info, "num_bytes", 0) or 0)
        present = sum(os.path.getsize(p) for p in paths)
        if present < recorded:
            raise ValueError(
                f"The prepared dataset {name}/{config} in {folder!r} is truncated: the {split!r} files "
                f"{[os.path.basename(p) for p in paths]} hold {present} bytes, {recorded} were written. "
                + _rebuild_hint(name, folder, config)
            )


def prepare(name: str, data_dir: str | os.PathLike | None = None, *, config: str | None = None) -> str:
    """Build dataset `name` into `data_dir` once (later calls return at once) and return that data_dir.

    `data_dir` defaults to $MTMM_DATA_DIR, else ~/.cache/mtmm_keras/datasets. `config` is "full"
    (default) or "small" (a quick slice for tests). Raises SourceNotFoundError (a FileNotFoundError)
    naming the apt/pip command when a raw source is missing. TFDS writes into a temporary folder and
    renames it when done, so a failed build leaves nothing half-written.
    """
    import tensorflow_datasets as tfds

    builder = _builder(name, data_dir, config)
    if not builder.is_prepared():
        type(builder).check_sources()
        print(f"mtmm_keras.data: preparing {name}/{builder.builder_config.name} in {builder.data_dir} "
              "(one time only)...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        except OSError:
            # Another process may have finished the same build first (its rename won): that is fine.
            if not _builder(name, data_dir, config).is_prepared():
                raise
            builder = _builder(name, data_dir, config)
        sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
        print(f"mtmm_keras.data: {name}/{builder.builder_config.name} ready in {time.perf_counter() - start:.1f} s: "
              f"{sizes}", file=sys.stderr, flush=True)
    return registry.resolve_data_dir(data_dir)


def _ready_builder(name: str, data_dir: str | os.PathLike | None, config: str | None, prepare_if_needed: bool) -> Any:
    builder = _builder(name, data_dir, config)
    if not builder.is_prepared():
        if not prepare_if_needed:
            raise FileNotFoundError(
                f"Dataset {name}/{builder.builder_config.name} is not prepared in {registry.resolve_data_dir(data_dir)}. "
                f"Run mk.data.prepare({name!r}) first, or pass prepare=True.")
        prepare(name, data_dir, config=config)
        builder = _builder(name, data_dir, config)
    return builder


def load(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, batch_size: int | None = None,
         shuffle: bool = False, prepare: bool = True, *, config: str | None = None) -> Any:
    """A tf.data.Dataset of (x_dict, y_dict) pairs for `split` ("train", "test" or a TFDS slice like "train[:10%]").

    Images and audio come raw, as a device gives them: images as uint8 pixels in 0..255 ([28, 28, 1]),
    audio as the float32 waveform; the zoo models scale them themselves (`rescale=1/255` in the image
    encoder, the log-mel front end in the audio encoder). Tabular features come as stored (float32,
    standardised with the train split's statistics, which `info(name)["metadata"]` holds). Class labels
    are int64 scalars, regression targets float32 scalars. `batch_size=None` yields single examples;
    `shuffle=True` shuffles files and examples (buffer up to 10,000). The pipeline ends with prefetch.
    With `prepare=True` (default) a missing dataset is built first; with False it raises FileNotFoundError.
    """
    import tensorflow as tf

    if batch_size is not None:
        batch_size = _checks.positive_int(batch_size, "batch_size")
    builder = _ready_builder(name, data_dir, config, prepare)
    cls = type(builder)

    def to_xy(example):
        return {key: example[key] for key in cls.INPUTS}, {key: example[key] for key in cls.LABELS}

    _check_prepared_files(builder, name, split)
    ds = builder.as_dataset(split=split, shuffle_files=shuffle)
    ds = ds.map(to_xy, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(min(_num_examples(builder, split), _SHUFFLE_BUFFER))
    if batch_size is not None:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def _num_examples(builder: Any, split: str) -> int:
    try:
        return max(int(builder.info.splits[split].num_examples), 1)
    except (KeyError, ValueError, TypeError):
        return _SHUFFLE_BUFFER


def load_numpy(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, limit: int | None = None,
               *, config: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The whole split (or its first `limit` examples) as ({input: array}, {label: array}), in stored order."""
    ds = load(name, split=split, data_dir=data_dir, config=config)
    if limit is not None:
        ds = ds.take(_checks.positive_int(limit, "limit"))
    import tensorflow as tf

    parts: tuple[dict[str, list], dict[str, list]] = ({}, {})
    try:
        for batch in ds.batch(4096).as_numpy_iterator():
            for out, arrays in zip(parts, batch):
                for key, value in arrays.items():
                    out.setdefault(key, []).append(value)
    except tf.errors.OpError as err:  # a damaged record file: corrupted record, wrong length, gone
        builder = _builder(name, data_dir, config)
        folder = str(builder.data_dir)
        detail = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\].*", "", err.message or str(err)).strip() or type(err).__name__
        raise ValueError(
            f"The prepared dataset {name}/{builder.builder_config.name} in {folder!r} is damaged: reading split "
            f"{split!r} failed ({type(err).__name__}: {detail}). " + _rebuild_hint(name, folder, builder.builder_config.name)
        ) from None
    if not parts[1]:  # empty split: zero-length arrays of the right shape and dtype
        x_spec, y_spec = ds.element_spec
        return tuple({k: np.zeros((0, *s.shape), s.dtype.as_numpy_dtype) for k, s in spec.items()}  # type: ignore[return-value]
                     for spec in (x_spec, y_spec))
    return tuple({key: np.concatenate(values) for key, values in out.items()} for out in parts)  # type: ignore[return-value]


def _describe(feature: Any, as_input: bool) -> dict[str, Any]:
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return {"shape": [], "dtype": "int64", "num_classes": feature.num_classes, "names": list(feature.names)}
    if isinstance(feature, tfds.features.Image) and as_input:
        return {"shape": list(feature.shape), "dtype": "uint8", "range": [0, 255]}
    return {"shape": list(feature.shape), "dtype": np.dtype(feature.np_dtype).name}


def info(name: str, data_dir: str | os.PathLike | None = None, *, config: str | None = None) -> dict[str, Any]:
    """What `load` yields for dataset `name`: input/label shapes and dtypes, classes, split sizes, source, licence.

    Works without preparing; `prepared` says whether the data is in `data_dir` (split sizes are then read
    from it, otherwise they are the sizes the config will produce) and `metadata` then also holds what
    generation computed (e.g. standardisation statistics).
    """
    builder = _builder(name, data_dir, config)
    cls, features, prepared = type(builder), builder.info.features, builder.is_prepared()
    if prepared:
        splits = {split: int(s.num_examples) for split, s in builder.info.splits.items()}
    else:
        splits = {"train": builder.builder_config.train_size, "test": builder.builder_config.test_size}
    return {
        "name": name,
        "config": builder.builder_config.name,
        "configs": sorted(cls.builder_configs),
        "version": str(builder.version),
        "description": cls.DESCRIPTION,
        "inputs": {key: _describe(features[key], True) for key in cls.INPUTS},
        "labels": {key: _describe(features[key], False) for key in cls.LABELS},
        "splits": splits,
        "prepared": prepared,
        "data_dir": registry.resolve_data_dir(data_dir),
        "source": cls.SOURCE,
        "license": cls.LICENSE,
        "homepage": cls.HOMEPAGE,
        "citation": cls.CITATION,
        "metadata": dict(builder.info.metadata or {}),
    }
