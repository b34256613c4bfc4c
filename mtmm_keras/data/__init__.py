"""Datasets: synthetic problems for demos, tests and benchmarks (offline TFDS builders live here too)."""

from mtmm_keras.data.synthetic import paired_modalities, reference_multitask

__all__ = ["paired_modalities", "reference_multitask"]
