"""sha256 of weight files, checked before anything is loaded."""

from __future__ import annotations

from pathlib import Path

from mtmm_keras._hashing import sha256


def verify(path: Path | str, expected: str | None, what: str) -> None:
    """Raise unless the file exists and its sha256 is `expected`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file {path} is missing; retrain with `mtmm zoo train`.")
    if not expected:
        raise ValueError(f"{what}: no sha256 is recorded for {path.name}; refusing to load unverified weights.")
    actual = sha256(path)
    if actual != expected:
        raise ValueError(
            f"{what}: sha256 mismatch for {path} (expected {expected}, got {actual}). The file is corrupt or was "
            "modified; nothing was loaded. Reinstall the package or retrain with `mtmm zoo train`."
        )
