"""A zoo entry's headline metrics under the perturbations a device produces, and how much each costs.

Images (every image modality of the entry, the other modalities left clean):
- `brightness ×0.8`, `brightness ×1.2`: pixel values scaled, rounded and clipped to the input's range
  (0..255 for uint8);
- `shift 1 px`: the image moved by one pixel up, down, left and right (the edge that comes in is 0, the
  background); each metric is the mean over the four directions, and a second row gives the worst one;
- `noise σ=8`: additive Gaussian noise of standard deviation 8 grey levels (seeded), rounded and clipped.

Audio (every audio modality, waveform inputs):
- `volume ×0.5`, `volume ×2`: the waveform scaled, and clipped to full scale [-1, 1] (what a device's
  converter does) when the clean waveforms lie within it (av_digits' do not: no clipping there);
- `noise 30 dB SNR`: white Gaussian noise (seeded) at 30 dB below each clip's own power.

Tabular and text inputs have no device perturbation here (a sensor does not blur a table or a title): such
entries report the clean metrics only and say so.

`drop` is how much worse the perturbed metric is: clean − perturbed for metrics where higher is better,
perturbed − clean for RMSE; positive means the perturbation costs that much.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from mtmm_keras.zoo import headline

SEED = 0
IMAGE_NOISE_SIGMA = 8.0
AUDIO_SNR_DB = 30.0
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # (rows, columns): up, down, left, right


def _clip_range(images: np.ndarray) -> tuple[float, float]:
    if images.dtype == np.uint8:
        return 0.0, 255.0
    return (0.0, 1.0) if float(np.max(images, initial=0.0)) <= 1.0 and float(np.min(images, initial=0.0)) >= 0.0 else (0.0, 255.0)


def _as_input(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    low, high = _clip_range(like)
    values = np.clip(values, low, high)
    return np.round(values).astype(like.dtype) if like.dtype.kind in "iu" else values.astype(like.dtype)


def brightness(images: np.ndarray, factor: float) -> np.ndarray:
    """`images` × `factor`, rounded (integer inputs) and clipped to the input's range (0..255 for uint8)."""
    images = np.asarray(images)
    return _as_input(images.astype(np.float64) * float(factor), images)


def shift(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """`images` [n, H, W(, C)] moved by `rows` down and `columns` right (negative: up / left); the pixels
    that come in are 0."""
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"`images` must be [n, H, W] or [n, H, W, C]; got shape {images.shape}.")
    out = np.zeros_like(images)
    height, width = images.shape[1], images.shape[2]
    src_r = slice(max(0, -rows), height - max(0, rows))
    dst_r = slice(max(0, rows), height - max(0, -rows))
    src_c = slice(max(0, -columns), width - max(0, columns))
    dst_c = slice(max(0, columns), width - max(0, -columns))
    out[:, dst_r, dst_c] = images[:, src_r, src_c]
    return out


def gaussian_noise(images: np.ndarray, sigma: float = IMAGE_NOISE_SIGMA, seed: int = SEED) -> np.ndarray:
    """`images` + N(0, sigma²) (in the input's units: grey levels for uint8), rounded and clipped."""
    images = np.asarray(images)
    noise = np.random.default_rng(seed).normal(0.0, float(sigma), images.shape)
    return _as_input(images.astype(np.float64) + noise, images)


def _full_scale(waveforms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` clipped to [-1, 1] when the clean `waveforms` lie in it (full-scale audio, as a device's
    converter delivers); waveforms in other units (av_digits: unit-variance noise, peaks near 10) are left
    unclipped, since no converter limit is known for them."""
    if float(np.max(np.abs(waveforms), initial=0.0)) <= 1.0:
        values = np.clip(values, -1.0, 1.0)
    return values.astype(waveforms.dtype)


def volume(waveforms: np.ndarray, factor: float) -> np.ndarray:
    """Waveforms × `factor`, clipped to full scale [-1, 1] when the clean waveforms lie within it."""
    waveforms = np.asarray(waveforms)
    return _full_scale(waveforms, waveforms * float(factor))


def audio_noise(waveforms: np.ndarray, snr_db: float = AUDIO_SNR_DB, seed: int = SEED) -> np.ndarray:
    """Waveforms plus white Gaussian noise `snr_db` below each clip's mean power (seeded), clipped to [-1, 1]
    when the clean waveforms lie within it."""
    waveforms = np.asarray(waveforms)
    flat = waveforms.reshape(len(waveforms), -1).astype(np.float64)
    power = np.mean(flat ** 2, axis=1, keepdims=True)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, flat.shape) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return _full_scale(waveforms, (flat + noise).reshape(waveforms.shape))


def perturbations() -> dict[str, tuple[str, list[Callable[[np.ndarray], np.ndarray]]]]:
    """{name: (encoder kind it applies to, [one or more variants whose metrics are averaged])}."""
    return {
        "brightness ×0.8": ("image", [lambda a: brightness(a, 0.8)]),
        "brightness ×1.2": ("image", [lambda a: brightness(a, 1.2)]),
        "shift 1 px (mean of 4 directions)": ("image", [lambda a, s=s: shift(a, *s) for s in SHIFTS]),
        f"noise σ={IMAGE_NOISE_SIGMA:g}": ("image", [lambda a: gaussian_noise(a, IMAGE_NOISE_SIGMA)]),
        "volume ×0.5": ("audio", [lambda a: volume(a, 0.5)]),
        "volume ×2": ("audio", [lambda a: volume(a, 2.0)]),
        f"noise {AUDIO_SNR_DB:g} dB SNR": ("audio", [lambda a: audio_noise(a, AUDIO_SNR_DB)]),
    }


def drop(row: dict[str, Any], clean: float, perturbed: float) -> float:
    """How much worse `perturbed` is than `clean` for a headline row (positive: worse)."""
    return clean - perturbed if row["higher_is_better"] else perturbed - clean


def measure(model: Any, recipe: dict[str, Any], x: dict[str, np.ndarray], y: dict[str, np.ndarray],
            rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry's headline metrics on the clean test split and under each perturbation that applies to
    one of its modalities: {"clean": {key: value}, "perturbations": {name: {"modalities", "metrics", "drop"}},
    "not_applicable": [modality kinds without perturbations]}."""
    groups = y.get("group") if recipe["builder"] == "joint_embedding" else None

    def scores(inputs: dict[str, np.ndarray]) -> dict[str, float]:
        return headline.scalar_values(rows, headline.model_outputs(model, recipe, inputs, groups), y, recipe)

    kinds = {m: spec.get("kind") for m, spec in recipe["encoders"].items()}
    clean = scores(x)
    result: dict[str, Any] = {"clean": clean, "perturbations": {},
                              "not_applicable": sorted({k for k in kinds.values() if k not in ("image", "audio")})}
    for name, (kind, variants) in perturbations().items():
        targets = [m for m, k in kinds.items() if k == kind]
        if kind == "audio":
            targets = [m for m in targets if np.asarray(x[m]).ndim == 2]  # waveforms only
        if not targets:
            continue
        runs = [scores({**x, **{m: variant(np.asarray(x[m])) for m in targets}}) for variant in variants]
        metrics = {key: float(np.mean([run[key] for run in runs])) for key in clean}
        result["perturbations"][name] = {
            "modalities": targets, "metrics": metrics,
            "drop": {row["key"]: drop(row, clean[row["key"]], metrics[row["key"]]) for row in rows},
        }
        if len(runs) > 1:  # also the worst variant per metric (e.g. the worst of the four shift directions)
            worst = {row["key"]: float(max((run[row["key"]] for run in runs), key=lambda v, r=row: drop(r, clean[r["key"]], v)))
                     for row in rows}
            result["perturbations"][name.replace("mean of", "worst of")] = {
                "modalities": targets, "metrics": worst,
                "drop": {row["key"]: drop(row, clean[row["key"]], worst[row["key"]]) for row in rows},
            }
    return result
