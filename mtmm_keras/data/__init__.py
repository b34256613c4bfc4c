"""Datasets: synthetic problems for demos and tests, and offline real datasets built as TFDS datasets.

Offline datasets (`names()`): multi_fashion, av_digits, mfeat, penguins, movies. `prepare(name)` builds one
into the data folder ($MTMM_DATA_DIR, else ~/.cache/mtmm_keras/datasets) once; `load(name, split)`
gives a tf.data pipeline of (x_dict, y_dict); `load_numpy` the same as arrays; `info(name)` describes
it. TensorFlow is imported only when one of these is called.
"""

from mtmm_keras.data.loading import info, load, load_numpy, prepare
from mtmm_keras.data.registry import names
from mtmm_keras.data.sources import SourceNotFoundError
from mtmm_keras.data.synthetic import paired_modalities, reference_multitask

__all__ = [
    "SourceNotFoundError",
    "info",
    "load",
    "load_numpy",
    "names",
    "paired_modalities",
    "prepare",
    "reference_multitask",
]
