"""Small learnable synthetic problems, generated from a seed (no downloads), shaped like the spec's examples."""

from __future__ import annotations

import numpy as np

from mtmm_keras import _checks


def reference_multitask(num_samples: int = 1024, input_dim: int = 100, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The spec's hard-sharing example: x ∈ R^100 → tasks "a" (1), "b" (1), "c" (2), all regression.

    The targets are smooth functions of a few shared directions of x, so a shared trunk helps.
    """
    num_samples = _checks.positive_int(num_samples, "num_samples")
    input_dim = _checks.positive_int(input_dim, "input_dim")
    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(1234).normal(size=(input_dim, 4)) / np.sqrt(input_dim)
    x = rng.normal(size=(num_samples, input_dim)).astype(np.float32)
    z = x @ projection  # 4 shared latent factors
    targets = {
        "a": np.sin(2.0 * z[:, :1]),
        "b": z[:, 1:2] * z[:, 2:3],
        "c": np.concatenate([np.tanh(z[:, 3:4] + z[:, :1]), z[:, 1:2] - z[:, 3:4]], axis=1),
    }
    return x, {k: v.astype(np.float32) for k, v in targets.items()}


def paired_modalities(
    num_samples: int = 512,
    num_classes: int = 8,
    sequence_length: int = 12,
    vocab_size: int = 64,
    image_size: int = 8,
    tabular_dim: int = 16,
    noise: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Three views of one latent class per sample: token ids, a greyscale image and a feature vector.

    Each view alone is noisy; matching views (same row) share the class, so the set serves both
    cross-modal retrieval and fusion. Returns {"tokens", "image", "tabular", "label"}.
    """
    num_samples = _checks.positive_int(num_samples, "num_samples")
    num_classes = _checks.positive_int(num_classes, "num_classes")
    rng = np.random.default_rng(seed)
    fixed = np.random.default_rng(4321)  # class prototypes are the same for every seed
    label = rng.integers(0, num_classes, size=num_samples)
    # text: tokens drawn mostly from a class-specific band of the vocabulary
    band = max(vocab_size // num_classes, 1)
    own = label[:, None] * band + rng.integers(0, band, size=(num_samples, sequence_length))
    random_tokens = rng.integers(0, vocab_size, size=(num_samples, sequence_length))
    tokens = np.where(rng.random((num_samples, sequence_length)) < 0.6, own, random_tokens) % vocab_size
    # image: a class template plus noise
    templates = fixed.normal(size=(num_classes, image_size, image_size, 1))
    image = templates[label] + noise * rng.normal(size=(num_samples, image_size, image_size, 1))
    # tabular: a class centroid plus noise
    centroids = fixed.normal(size=(num_classes, tabular_dim))
    tabular = centroids[label] + 1.5 * noise * rng.normal(size=(num_samples, tabular_dim))
    return {
        "tokens": tokens.astype(np.int32),
        "image": image.astype(np.float32),
        "tabular": tabular.astype(np.float32),
        "label": label.astype(np.int32),
    }
