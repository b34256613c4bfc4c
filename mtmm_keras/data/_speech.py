"""Spoken digits synthesised with espeak-ng, cached on disk per voice (one .npz, written atomically).

A *voice* is an espeak-ng accent plus a variant, e.g. ``"en-gb-scotland+f2"``. Each voice says each
digit word `takes` times, each take with its own speed and pitch drawn from a seed derived from
(voice, digit, take), so a take sounds the same whichever other voices or takes are generated.
The cache holds trimmed int16 waveforms at 11,025 Hz.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import subprocess
import zlib

import numpy as np

from mtmm_keras.data import _audio

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEED_RANGE = (110, 220)  # words per minute
PITCH_RANGE = (20, 80)  # espeak-ng pitch, 0..99
CACHE_FORMAT = "v1"


def take_params(voice: str, digit: int, take: int) -> tuple[int, int]:
    """(speed, pitch) of one take, fixed by a seed derived from its identity."""
    rng = np.random.default_rng(zlib.crc32(f"{voice}/{digit}/{take}".encode()))
    return int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)), int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Samples (float64 in [-1, 1]) and sample rate of a mono 16-bit PCM WAV, including espeak-ng's
    streamed output whose header sizes are placeholders."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not return a WAV stream")
    rate = int.from_bytes(data[24:28], "little")
    start = data.index(b"data", 12) + 8
    body = data[start:start + (len(data) - start) // 2 * 2]
    return np.frombuffer(body, dtype="<i2").astype(np.float64) / 32768.0, rate


def synthesize(espeak: str, voice: str, digit: int, take: int) -> np.ndarray:
    """One take of a digit word: int16 samples at 11,025 Hz with the silence around it trimmed."""
    speed, pitch = take_params(voice, digit, take)
    cmd = [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", WORDS[digit]]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {' '.join(cmd)}\n{result.stderr.decode(errors='replace')}")
    samples, rate = parse_wav(result.stdout)
    if rate != 2 * _audio.SAMPLE_RATE:
        raise RuntimeError(f"expected espeak-ng to write {2 * _audio.SAMPLE_RATE} Hz audio, got {rate} Hz")
    x = _audio.trim_silence(_audio.decimate2(samples))
    return np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)


def cache_path(cache_dir: pathlib.Path, voice: str, takes: int) -> pathlib.Path:
    """The .npz file that caches all `takes` takes of all ten digits of `voice`."""
    return cache_dir / f"{re.sub(r'[^A-Za-z0-9.+-]', '_', voice)}__takes{takes}.npz"


def voice_takes(espeak: str, cache_dir: pathlib.Path, voice: str, takes: int) -> dict[tuple[int, int], np.ndarray]:
    """{(digit, take): int16 samples} for one voice, synthesised once and then read from the cache."""
    path = cache_path(cache_dir, voice, takes)
    if not path.exists():
        arrays = {f"d{d}_t{t}": synthesize(espeak, voice, d, t) for d in range(10) for t in range(takes)}
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{voice}")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)  # atomic: a reader sees the whole file or none
        finally:
            tmp.unlink(missing_ok=True)
    with np.load(path) as data:
        return {(d, t): data[f"d{d}_t{t}"] for d in range(10) for t in range(takes)}


def synthesize_voices(espeak: str, cache_dir: pathlib.Path, voices: list[str], takes: int,
                      workers: int | None = None) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """All takes of all voices, `workers` espeak-ng processes at a time, with a progress bar."""
    from tqdm.auto import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {voice: pool.submit(voice_takes, espeak, cache_dir, voice, takes) for voice in voices}
        done = tqdm(concurrent.futures.as_completed(futures.values()), total=len(voices),
                    desc="espeak-ng voices", unit="voice", leave=False)
        for future in done:
            future.result()
    return {voice: future.result() for voice, future in futures.items()}
