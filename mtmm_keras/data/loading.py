"""Public API of the offline datasets: prepare once, then load as (x, y) tf.data pipelines or numpy arrays.

TensorFlow and TensorFlow Datasets are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from mtmm_keras import _checks
from mtmm_keras.data import registry

_SHUFFLE_BUFFER = 10_000


def _builder(name: str, data_dir: str | os.PathLike | None, config: str | None) -> Any:
    cls = registry.builder_class(name)
    config = cls.DEFAULT_CONFIG_NAME if config is None else config
    if config not in cls.builder_configs:
        raise ValueError(f"Unknown config {config!r} for dataset {name!r}. Valid configs: {sorted(cls.builder_configs)}.")
    return cls(data_dir=registry.resolve_data_dir(data_dir), config=config)


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
    parts: tuple[dict[str, list], dict[str, list]] = ({}, {})
    for batch in ds.batch(4096).as_numpy_iterator():
        for out, arrays in zip(parts, batch):
            for key, value in arrays.items():
                out.setdefault(key, []).append(value)
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
