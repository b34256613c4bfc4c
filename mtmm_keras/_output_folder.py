"""Write an output folder atomically, and replace only a folder this tool wrote earlier.

One helper for every command that writes a folder (exports, zoo entries, presets): the target is
validated before anything touches the disk, the new contents are written into a hidden staging folder
beside it, and the finished folder is swapped in with one rename. A folder that holds files this tool
did not write is never replaced, an earlier output only with `overwrite=True`, and staging folders left
by a killed process are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import os
import secrets
import shutil
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

TOOL = "mtmm-keras"
STAGING_TAG = ".mtmm-staging-"
_OLD_SUFFIX = "-old"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


_signals_received: list[int] = []
_active_staging: set[str] = set()  # this process's staging folders in use (others with our pid are stale)
committed: list[str] = []  # outputs this process swapped in, so an interrupt message can say so


@contextlib.contextmanager
def signal_guards() -> Iterator[None]:
    """Within the block, SIGTERM unwinds like Ctrl-C (so staging folders are removed) and either signal is
    remembered, so no later step can commit an output after the user asked to stop (even if a library
    swallowed the exception). The previous handlers come back afterwards."""

    def handler(signum, frame):
        _signals_received.append(signum)
        raise _interruption(signum)

    # Once a signal has arrived, what a finalizer reports is the interruption's debris: our exception landed in a
    # __del__, or an object the interrupted work left half-built fails in its own (TensorFlow's ApiDefMap: "no
    # attribute '_api_def_map'"). The user sees the one "interrupted" line, not a stray traceback.
    def unraisable(info):
        if not _signals_received:
            previous_unraisable(info)

    def excepthook(kind, error, trace):
        if not (_signals_received and _raised_by_a_signal(error)):
            previous_excepthook(kind, error, trace)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_unraisable, sys.unraisablehook = sys.unraisablehook, unraisable
    previous_excepthook, sys.excepthook = sys.excepthook, excepthook
    try:
        yield
    except BaseException as error:
        if not _signals_received:
            raise
        # Once a signal has arrived, whatever ends the block is the interruption, not an error to report: a
        # library may have caught ours and raised its own (TensorFlow turns a KeyboardInterrupt inside
        # tf.function's argument binding into "TypeError: Binding inputs to tf.function failed", chain lost).
        _release_interrupted_work(error)
        raise _interruption(_signals_received[0]) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        sys.unraisablehook = previous_unraisable
        sys.excepthook = previous_excepthook
        _signals_received.clear()


class SignalExit(SystemExit):
    """SIGTERM inside `signal_guards()`: unwinds like Ctrl-C and exits with 128 + signum (the shell's code); the
    CLI reports it as it reports a Ctrl-C."""


def _interruption(signum: int) -> BaseException:
    """What a signal raises: KeyboardInterrupt for Ctrl-C, SignalExit(128 + signum) for SIGTERM."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt(f"stopped by signal {signum}; nothing was written.")
    return SignalExit(128 + signum)


def _release_interrupted_work(error: BaseException) -> None:
    """Free what the unwound frames of `error` (and the errors chained to it) still hold, while the guards' hooks
    are on: half-built objects are finalized here, quietly, instead of at interpreter exit after the message."""
    for each in _chain(error):
        traceback.clear_frames(each.__traceback__)
    gc.collect()


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then the error it was raised from or during, and so on (each once)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _raised_by_a_signal(error: BaseException | None) -> bool:
    """Whether `error` is the handler's KeyboardInterrupt/SystemExit or was caused by it: raised inside a C call
    back into Python (TensorFlow's nest flattening importing a module), it comes out as a SystemError ("returned a
    result with an exception set") chained to ours."""
    return any(isinstance(each, (KeyboardInterrupt, SystemExit)) for each in _chain(error))


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt (Ctrl-C) or SignalExit (SIGTERM) if either arrived inside `signal_guards()`."""
    if _signals_received:
        raise _interruption(_signals_received[0])


class OutputFolderError(ValueError):
    """The output folder cannot be used (not ours, a file, empty path, not writable, busy); nothing was written."""


def marker(kind: str) -> dict[str, str]:
    """The `written_by` entry that an owner file (manifest.json / metadata.json) carries."""
    from mtmm_keras import __version__

    return {"tool": TOOL, "kind": kind, "version": __version__}


def owner_record(folder: Path, owner_file: str, kind: str, legacy_keys: tuple[str, ...] = ()) -> dict | None:
    """The parsed `folder/owner_file` when this tool wrote it for `kind` (or an older release's layout), else None."""
    path = folder / owner_file
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    written_by = data.get("written_by")
    if isinstance(written_by, dict):
        return data if written_by.get("tool") == TOOL and written_by.get("kind") == kind else None
    return data if legacy_keys and all(key in data for key in legacy_keys) else None


def written_by_this_tool(folder: Path, owner_file: str, kind: str, legacy_keys: tuple[str, ...] = ()) -> bool:
    """True when `folder/owner_file` is JSON that this tool wrote for `kind` (or an older release's layout)."""
    return owner_record(folder, owner_file, kind, legacy_keys) is not None


def top_level_names(paths: Iterable[str], folder: Path) -> set[str]:
    """The first path component of each path (relative, or absolute inside `folder`, as old manifests wrote)."""
    names = set()
    for path in paths:
        if not isinstance(path, str) or not path:
            continue
        if os.path.isabs(path):
            path = os.path.relpath(path, folder)
        first = Path(path).parts[0] if Path(path).parts else ""
        if first and first not in (".", ".."):
            names.add(first)
    return names


class OutputFolder:
    """A validated output folder: `with folder.staging() as tmp: ...write...; folder.commit(tmp)`.

    Args:
        target: where the folder goes. Must be a new path, an empty folder, or (with `overwrite=True`)
            a folder whose `owner_file` says this tool wrote it as `kind`.
        kind: what is written ("export", "zoo entry"): earlier outputs of another kind are not replaced.
        owner_file: the JSON file (with `written_by: marker(kind)`) that proves ownership.
        argument: the name users know the target by in errors (`out_dir`, `--out`).
        legacy_keys: keys that identify an owner file written before `written_by` existed.
        listed: the top-level names an owner record says the tool wrote (given the record and the folder).
            An earlier output is replaced only when it holds nothing else: a file a user put into it
            (a source model, notes) keeps the whole folder from being replaced.
    """

    def __init__(self, target: str | os.PathLike, *, kind: str, owner_file: str, overwrite: bool = False,
                 argument: str = "out_dir", legacy_keys: tuple[str, ...] = (),
                 listed: Callable[[dict, Path], Iterable[str]] = lambda record, folder: ()):
        if not isinstance(overwrite, bool):
            raise TypeError(f"`overwrite` must be True or False, got {overwrite!r}.")
        self.kind, self.owner_file, self.overwrite, self.argument = kind, owner_file, overwrite, argument
        self.legacy_keys, self.listed = legacy_keys, listed
        self.path = self._validated(target)

    # -- validation (reads only) -------------------------------------------------------------------
    def _validated(self, target: Any) -> Path:
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"`{self.argument}` must be a folder path (str or os.PathLike), got {type(target).__name__}.")
        text = os.fspath(target)
        if not isinstance(text, str) or not text.strip():
            raise OutputFolderError(f"`{self.argument}` is empty; give the folder to write the {self.kind} into "
                                    "(an unset shell variable gives an empty path).")
        path = Path(os.path.abspath(text))
        if path.parent == path:
            raise OutputFolderError(f"`{self.argument}` {text!r} is the file-system root; choose a new or empty folder.")
        self.check_replaceable(path, text)
        self._check_writable(path, text)
        return path

    def check_replaceable(self, path: Path, shown: str | None = None) -> None:
        """Raise unless `path` is missing, an empty folder, or an earlier output we may replace."""
        shown = shown or str(path)
        if path.is_symlink():
            raise OutputFolderError(f"`{self.argument}` {shown!r} is a symbolic link; give the real folder path.")
        if not path.exists():
            return
        if not path.is_dir():
            raise OutputFolderError(f"`{self.argument}` {shown!r} is an existing file, not a folder; nothing was "
                                    "changed. Choose a new or empty folder.")
        entries = sorted(os.listdir(path))
        if not entries:
            return
        record = owner_record(path, self.owner_file, self.kind, self.legacy_keys)
        if record is not None:
            unlisted = sorted(set(entries) - {self.owner_file} - set(self.listed(record, path)))
            if unlisted:
                raise OutputFolderError(
                    f"`{self.argument}` {shown!r} holds an earlier {self.kind} and also files it did not write "
                    f"({', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}); refusing to replace it, even "
                    "with overwrite/--force. Move those files out or choose another folder. Nothing was changed.")
            if self.overwrite:
                return
            raise OutputFolderError(
                f"`{self.argument}` {shown!r} already holds an earlier {self.kind}; pass overwrite=True (CLI: --force) "
                "to replace it, or choose a new folder. Nothing was changed.")
        listed = ", ".join(e + ("/" if (path / e).is_dir() else "") for e in entries[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        raise OutputFolderError(
            f"`{self.argument}` {shown!r} is a folder that holds files this tool did not write ({listed}{more}); "
            f"refusing to replace it, even with overwrite/--force (only an earlier {self.kind} with its "
            f"{self.owner_file} may be replaced). Choose a new or empty folder. Nothing was changed.")

    def _check_writable(self, path: Path, shown: str) -> None:
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputFolderError(f"`{self.argument}` {shown!r}: {ancestor} is a file, so no folder can be made there.")
        if not os.access(ancestor, os.R_OK | os.W_OK | os.X_OK):
            raise OutputFolderError(f"`{self.argument}` {shown!r}: no permission to read and write in {ancestor}; "
                                    "choose a folder you can write to.")

    def probe_writable(self) -> None:
        """Create and remove a hidden folder where the staging folder will go (catches read-only file systems
        before a long job); parent folders made for the probe are removed again."""
        made = []
        parent = self.path.parent
        while not parent.exists():
            made.append(parent)
            parent = parent.parent
        probe = None
        try:
            for folder in reversed(made):
                folder.mkdir()
            probe = self.path.parent / f"{self._staging_prefix()}{os.getpid()}-probe-{secrets.token_hex(4)}"
            probe.mkdir()
        except OSError as err:
            raise OutputFolderError(f"`{self.argument}` {str(self.path)!r} is not writable: {err.strerror or err} "
                                    f"({err.filename or self.path.parent}). Nothing was written.") from None
        finally:
            if probe is not None and probe.exists():
                probe.rmdir()
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()

    # -- staging and the swap -----------------------------------------------------------------------
    def _staging_prefix(self) -> str:
        return f".{self.path.name}{STAGING_TAG}"

    @contextlib.contextmanager
    def _parent_lock(self) -> Iterator[None]:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _other_writers_and_stale(self) -> tuple[list[int], list[Path]]:
        live, stale = [], []
        prefix = self._staging_prefix()
        for entry in self.path.parent.iterdir():
            if not entry.name.startswith(prefix):
                continue
            pid_text = entry.name[len(prefix):].split("-", 1)[0]
            pid = int(pid_text) if pid_text.isdigit() else -1
            if pid == os.getpid():
                if str(entry) not in _active_staging:  # left by an earlier run that had our pid (containers)
                    stale.append(entry)
            elif pid > 0 and _alive(pid):
                live.append((pid, entry))
            else:
                stale.append(entry)
        return live, stale

    def _clean_stale(self, stale: list[Path]) -> None:
        for entry in stale:
            if not entry.name.endswith(_OLD_SUFFIX):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            # an earlier output set aside by a swap that was killed half-way
            if self.path.is_dir() and not self.path.is_symlink() and not os.listdir(self.path):
                self.path.rmdir()
            if not self.path.exists():
                os.rename(entry, self.path)  # it comes back
            elif written_by_this_tool(self.path, self.owner_file, self.kind, self.legacy_keys):
                shutil.rmtree(entry, ignore_errors=True)  # the swap had finished: this is the replaced output
            else:
                warnings.warn(f"{entry} holds an earlier {self.kind} set aside by an interrupted run, and "
                              f"{self.path} now holds other files: both are left as they are.", RuntimeWarning, stacklevel=3)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh hidden folder beside the target (mode as for any new folder); removed on any error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._parent_lock():
            live, stale = self._other_writers_and_stale()
            if live:
                pids = ", ".join(str(pid) for pid, _ in live)
                raise OutputFolderError(
                    f"`{self.argument}` {str(self.path)!r} is being written by another mtmm process (pid {pids}); "
                    f"wait for it to finish or choose another folder. If no mtmm process is running, delete "
                    f"{', '.join(str(entry) for _, entry in live)}.")
            self._clean_stale(stale)
            self.check_replaceable(self.path)  # a restored earlier output needs overwrite like any other
            tmp = self.path.parent / f"{self._staging_prefix()}{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
            _active_staging.add(str(tmp))
        try:
            yield tmp
        finally:
            _active_staging.discard(str(tmp))
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, staged: Path) -> None:
        """Swap `staged` in as the target in one rename; an earlier output is removed only afterwards."""
        if not written_by_this_tool(staged, self.owner_file, self.kind):
            raise RuntimeError(f"internal error: {staged} has no {self.owner_file} marking it as this tool's {self.kind}.")
        raise_if_interrupted()
        with self._parent_lock(), _signals_held():
            self.check_replaceable(self.path)  # it may have changed during a long job
            if self.path.is_dir() and os.listdir(self.path):
                if not exchange(staged, self.path):
                    old = staged.with_name(staged.name + _OLD_SUFFIX)
                    os.rename(self.path, old)
                    try:
                        os.rename(staged, self.path)
                    except BaseException:
                        os.rename(old, self.path)  # put the earlier output back
                        raise
                    staged = old
                committed.append(str(self.path))
                shutil.rmtree(staged, ignore_errors=True)  # now holds the earlier output
            else:
                os.rename(staged, self.path)  # new path, or an empty folder (rename replaces it)
                committed.append(str(self.path))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while the swap runs (delivered right after), so it is never cut half-way."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported (then the
    caller renames the old folder aside first)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path | str, data: Any) -> None:
    """JSON with finite numbers only (a NaN would make the file invalid JSON): raises ValueError otherwise."""
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    Path(path).write_text(text + "\n")


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{type(value).__name__} is not JSON serializable") from None
