"""Mel filterbank (numpy only): shared by the in-model front end (`LogMelSpectrogram`) and the datasets'
reference numpy front end, so both use one definition of the mel scale."""

from __future__ import annotations

import numpy as np

# The front end's defaults, used by `LogMelSpectrogram` and the av_digits dataset alike.
SAMPLE_RATE = 11_025  # espeak-ng's 22,050 Hz output, decimated by 2
FRAME_LENGTH = 512  # 46 ms Hann window
HOP = 340  # 31 ms
NUM_MEL_BINS = 32
FMIN, FMAX = 80.0, 5_000.0  # Hz


def mel_filterbank(num_bins: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_fft // 2 + 1, num_bins] triangular mel filters (HTK mel scale), each with unit area."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), num_bins + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)))
    tri /= np.maximum(tri.sum(axis=1, keepdims=True), 1e-12)
    return tri.T
