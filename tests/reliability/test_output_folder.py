"""The one helper that writes output folders: never replaces what it did not write, swaps atomically,
cleans what a killed run left, refuses a second writer. Fast cases, no model needed."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mtmm_keras import _output_folder
from mtmm_keras._output_folder import OutputFolder, OutputFolderError

from reliability_helpers import tree_listing


def _folder(target, overwrite=False):
    return OutputFolder(target, kind="export", owner_file="manifest.json", overwrite=overwrite, argument="--out",
                        legacy_keys=("model_name", "artifacts"),
                        listed=lambda record, folder: _output_folder.top_level_names(record.get("files", []), folder))


def _write_output(folder: OutputFolder, files: dict[str, str]) -> None:
    with folder.staging() as staging:
        for name, text in files.items():
            (staging / name).write_text(text)
        (staging / "manifest.json").write_text(json.dumps({"written_by": _output_folder.marker("export"), "files": list(files)}))
        folder.commit(staging)


def test_user_folder_is_refused_even_with_overwrite(user_folder):
    before = tree_listing(user_folder.parent)
    for overwrite in (False, True):
        with pytest.raises(OutputFolderError, match=r"holds files this tool did not write \(\.env, important\.csv, src/\).*Choose a new or empty folder"):
            _folder(user_folder, overwrite)
    assert tree_listing(user_folder.parent) == before


def test_current_folder_is_refused(user_folder, monkeypatch):
    monkeypatch.chdir(user_folder)
    before = tree_listing(user_folder)
    with pytest.raises(OutputFolderError, match="'.' is a folder that holds files this tool did not write"):
        _folder(".", overwrite=True)
    assert tree_listing(user_folder) == before


@pytest.mark.parametrize("target", ["", "   "])
def test_empty_path_is_refused(target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputFolderError, match="`--out` is empty.*unset shell variable"):
        _folder(target, overwrite=True)
    assert os.listdir(tmp_path) == ["keep.txt"]


@pytest.mark.parametrize("target", [None, 3, ["a"]])
def test_non_path_is_a_type_error(target):
    with pytest.raises(TypeError, match="`--out` must be a folder path"):
        _folder(target)


def test_existing_file_is_refused_and_not_renamed(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("user data")
    with pytest.raises(OutputFolderError, match="is an existing file, not a folder"):
        _folder(path, overwrite=True)
    assert os.listdir(tmp_path) == ["model.onnx"] and path.read_text() == "user data"


def test_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OutputFolderError, match="is a symbolic link"):
        _folder(tmp_path / "link")


def test_root_is_refused():
    with pytest.raises(OutputFolderError, match="file-system root"):
        _folder("/")


def test_parent_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file, so no folder can be made there"):
        _folder(tmp_path / "afile" / "out")


def test_new_folder_is_written_with_normal_permissions_and_nothing_else_changes(user_folder):
    before = tree_listing(user_folder)
    out = user_folder / "exports" / "m"
    _write_output(_folder(out), {"a.txt": "new"})
    assert (out / "a.txt").read_text() == "new"
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o777 & ~_umask())  # not mkdtemp's 0700
    after = tree_listing(user_folder, skip="exports")
    assert after == before
    assert os.listdir(user_folder / "exports") == ["m"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_empty_folder_is_used(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _write_output(_folder(out), {"a.txt": "1"})
    assert sorted(os.listdir(out)) == ["a.txt", "manifest.json"]


def test_earlier_output_needs_overwrite_then_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    with pytest.raises(OutputFolderError, match="already holds an earlier export; pass overwrite=True \\(CLI: --force\\)"):
        _folder(out)
    _write_output(_folder(out, overwrite=True), {"new.txt": "new"})
    assert sorted(os.listdir(out)) == ["manifest.json", "new.txt"]
    assert os.listdir(tmp_path) == ["out"]  # no backup or staging left


def test_legacy_output_is_recognised(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"model_name": "m", "artifacts": [], "files": []}))
    _write_output(_folder(out, overwrite=True), {"x.txt": "1"})
    assert "x.txt" in os.listdir(out)


@pytest.mark.parametrize("manifest", ['{"written_by": {"tool": "other", "kind": "export"}}',
                                      '{"written_by": {"tool": "mtmm-keras", "kind": "zoo entry"}}',
                                      "not json", "[1, 2]"])
def test_foreign_or_broken_manifest_does_not_prove_ownership(tmp_path, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(manifest)
    with pytest.raises(OutputFolderError, match="holds files this tool did not write"):
        _folder(out, overwrite=True)


def test_failure_inside_staging_leaves_everything_as_it_was(tmp_path):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    before = tree_listing(tmp_path)
    folder = _folder(out, overwrite=True)
    with pytest.raises(RuntimeError, match="boom"):
        with folder.staging() as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert tree_listing(tmp_path) == before


def test_a_user_file_appearing_during_the_job_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    folder = _folder(out)
    with folder.staging() as staging:
        (staging / "manifest.json").write_text(json.dumps({"written_by": _output_folder.marker("export")}))
        out.mkdir()
        (out / "mine.txt").write_text("arrived meanwhile")
        with pytest.raises(OutputFolderError, match="did not write"):
            folder.commit(staging)
    assert os.listdir(out) == ["mine.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_commit_refuses_a_staging_folder_without_the_owner_marker(tmp_path):
    folder = _folder(tmp_path / "out")
    with folder.staging() as staging, pytest.raises(RuntimeError, match="internal error"):
        folder.commit(staging)
    assert os.listdir(tmp_path) == []


def test_rename_aside_fallback_when_exchange_is_unsupported(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    monkeypatch.setattr(_output_folder, "exchange", lambda a, b: False)
    _write_output(_folder(out, overwrite=True), {"new.txt": "new"})
    assert sorted(os.listdir(out)) == ["manifest.json", "new.txt"] and os.listdir(tmp_path) == ["out"]


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "1").write_text("a")
    (b / "2").write_text("b")
    if not _output_folder.exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) unsupported here; the fallback test covers this path")
    assert os.listdir(a) == ["2"] and os.listdir(b) == ["1"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_of_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / f".out.mtmm-staging-{_dead_pid()}-abcd"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"0" * 100)
    (tmp_path / "user.txt").write_text("keep")
    _write_output(_folder(out), {"a": "1"})
    assert sorted(os.listdir(tmp_path)) == ["out", "user.txt"]


def test_swap_killed_half_way_brings_the_earlier_output_back(tmp_path):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    aside = tmp_path / f".out.mtmm-staging-{_dead_pid()}-abcd-old"
    os.rename(out, aside)  # what a SIGKILL between the fallback's two renames leaves
    with pytest.raises(OutputFolderError, match="already holds an earlier export"):
        with _folder(out).staging():
            pass
    assert sorted(os.listdir(out)) == ["manifest.json", "old.txt"]


def test_second_writer_is_refused_at_once(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".out.mtmm-staging-{sleeper.pid}-abcd"
        busy.mkdir()
        with pytest.raises(OutputFolderError, match=f"being written by another mtmm process \\(pid {sleeper.pid}\\)"):
            with _folder(tmp_path / "out").staging():
                pass
        assert busy.is_dir() and sorted(os.listdir(tmp_path)) == [busy.name]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_probe_catches_an_unwritable_place_and_leaves_nothing(tmp_path):
    folder = _folder(tmp_path / "a" / "b" / "out")
    folder.probe_writable()
    assert os.listdir(tmp_path) == []
    blocked = _folder("/proc/mtmm-cannot-write-here/out")
    with pytest.raises(OutputFolderError, match="is not writable"):
        blocked.probe_writable()


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _output_folder.write_json(tmp_path / "m.json", {"loss": float("nan")})
    _output_folder.write_json(tmp_path / "ok.json", {"loss": 1.5})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"loss": 1.5}


def test_interrupt_recorded_by_the_signal_guard_blocks_the_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(_output_folder, "_signals_received", [2])
    folder = _folder(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt, match="nothing was written"):
        with folder.staging() as staging:
            (staging / "manifest.json").write_text(json.dumps({"written_by": _output_folder.marker("export")}))
            folder.commit(staging)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("intruder", ["m.keras", "notes/"])
def test_an_earlier_output_holding_a_users_file_is_never_replaced(tmp_path, intruder):
    out = tmp_path / "out"
    _write_output(_folder(out), {"a.txt": "1"})
    if intruder.endswith("/"):
        (out / intruder).mkdir()
        (out / intruder / "todo.md").write_text("mine")
    else:
        (out / intruder).write_text("the user's source model")
    before = tree_listing(tmp_path)
    with pytest.raises(OutputFolderError, match=f"also files it did not write \\({intruder.rstrip('/')}\\).*even with overwrite"):
        _write_output(_folder(out, overwrite=True), {"b.txt": "2"})
    assert tree_listing(tmp_path) == before


def test_a_copied_manifest_does_not_make_a_project_replaceable(user_folder):
    (user_folder / "manifest.json").write_text(json.dumps({"written_by": _output_folder.marker("export"), "files": ["a"]}))
    before = tree_listing(user_folder)
    with pytest.raises(OutputFolderError, match="also files it did not write"):
        _folder(user_folder, overwrite=True)
    assert tree_listing(user_folder) == before


def test_overwrite_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match="`overwrite` must be True or False, got 'false'"):
        _folder(tmp_path / "out", overwrite="false")


def test_own_pid_leftovers_from_an_earlier_run_are_cleaned(tmp_path):
    leftover = tmp_path / f".out.mtmm-staging-{os.getpid()}-dead"
    leftover.mkdir()
    _write_output(_folder(tmp_path / "out"), {"a": "1"})
    assert os.listdir(tmp_path) == ["out"]


def test_set_aside_output_comes_back_when_the_target_is_an_empty_folder(tmp_path):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    os.rename(out, tmp_path / f".out.mtmm-staging-{_dead_pid()}-abcd-old")
    out.mkdir()  # e.g. `mkdir -p out` in a script before the next run
    with pytest.raises(OutputFolderError, match="already holds an earlier export"):
        with _folder(out).staging():
            pass
    assert sorted(os.listdir(out)) == ["manifest.json", "old.txt"]


def test_failed_second_rename_in_the_fallback_puts_the_earlier_output_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write_output(_folder(out), {"old.txt": "old"})
    monkeypatch.setattr(_output_folder, "exchange", lambda a, b: False)
    real_rename = os.rename

    def fail_second(src, dst):
        if not str(src).endswith("-old") and str(dst) == str(out):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", fail_second)
    with pytest.raises(OSError, match="No space left"):
        _write_output(_folder(out, overwrite=True), {"new.txt": "new"})
    monkeypatch.setattr(os, "rename", real_rename)
    assert sorted(os.listdir(out)) == ["manifest.json", "old.txt"] and os.listdir(tmp_path) == ["out"]


def test_probe_leftover_of_a_killed_run_is_cleaned(tmp_path):
    (tmp_path / f".out.mtmm-staging-{_dead_pid()}-probe-abcd").mkdir()
    _write_output(_folder(tmp_path / "out"), {"a": "1"})
    assert os.listdir(tmp_path) == ["out"]


def _signal_chained_error() -> SystemError:
    """What CPython makes of our handler's SystemExit raised inside a C call back into Python."""
    try:
        try:
            raise SystemExit(143)
        except SystemExit as stop:
            raise SystemError("<built-in function __import__> returned a result with an exception set") from stop
    except SystemError as error:
        return error


@pytest.mark.parametrize("hook", ["unraisablehook", "excepthook"])
def test_an_error_our_signal_caused_in_a_c_callback_prints_no_traceback(hook, monkeypatch):
    """A SIGTERM landing inside TensorFlow's C++ (nest flattening importing a module) comes out as a SystemError
    chained to our SystemExit, which the C code printed as a stray traceback before the "interrupted" line. Inside
    the guards, once a signal has arrived, such errors are dropped (the next step re-raises the interruption);
    other errors, and every error before a signal, still reach the hook that was there before."""
    from types import SimpleNamespace

    reached = []
    monkeypatch.setattr(sys, hook, lambda *args: reached.append(args))

    def report(error):
        reached.clear()
        if hook == "unraisablehook":
            sys.unraisablehook(SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None,
                                               err_msg=None, object=None))
        else:
            sys.excepthook(type(error), error, None)
        return len(reached)

    with _output_folder.signal_guards():
        assert report(_signal_chained_error()) == 1  # no signal yet: a real error
        assert report(ValueError("unrelated")) == 1
        _output_folder._signals_received.append(15)
        assert report(_signal_chained_error()) == 0
        # a finalizer's error after a signal is the interruption's debris; an uncaught one must be chained to it
        assert report(ValueError("unrelated")) == (0 if hook == "unraisablehook" else 1)
    assert not _output_folder._signals_received
    assert report(ValueError("after the guards")) == 1


def _library_swallowing_the_signal(signum):
    """What TensorFlow's tf.function call does when the signal lands while it binds arguments: it catches the
    exception and raises its own TypeError, without the chain."""
    try:
        os.kill(os.getpid(), signum)
    except BaseException:
        raise TypeError("Binding inputs to tf.function failed due to `missing a required argument`") from None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_library_error_raised_after_a_signal_ends_the_block_as_the_interruption(signum):
    """CI caught `mtmm export` printing "error: in user code: TypeError: Binding inputs to tf.function failed"
    for a Ctrl-C, instead of "interrupted; nothing was written". Once a signal has arrived, whatever ends the
    guarded block is the interruption; before one, errors pass through unchanged."""
    with pytest.raises(TypeError, match="a real error"):
        with _output_folder.signal_guards():
            raise TypeError("a real error")
    expected = KeyboardInterrupt if signum == signal.SIGINT else _output_folder.SignalExit
    with pytest.raises(expected) as stopped:
        with _output_folder.signal_guards():
            _library_swallowing_the_signal(signum)
    if signum == signal.SIGTERM:
        assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signum) is not None and not _output_folder._signals_received


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_cli_reports_a_signal_a_library_turned_into_an_error_as_an_interruption(monkeypatch, capsys, signum):
    """Both signals end with one line saying what was (not) written, and the shell's code: 130 for Ctrl-C,
    143 for SIGTERM (which used to exit silently)."""
    from mtmm_keras import cli

    monkeypatch.setattr(cli, "_cmd_export", lambda args: _library_swallowing_the_signal(signum))
    assert cli.main(["export", "m.keras", "--out", "out"]) == 128 + signum
    err = capsys.readouterr().err
    how = "interrupted by SIGTERM" if signum == signal.SIGTERM else "interrupted"
    assert f"mtmm export: {how}; nothing was written (partial output removed)." in err and "TypeError" not in err


class _HalfBuilt:
    """An object whose __init__ the signal cut short, and whose __del__ then fails (TensorFlow's ApiDefMap)."""

    finalized: list[bool] = []

    def __init__(self, signum):
        os.kill(os.getpid(), signum)
        self.handle = 1

    def __del__(self):
        _HalfBuilt.finalized.append(True)
        self.handle  # noqa: B018 - AttributeError: __init__ never got this far


def test_what_the_interrupted_work_left_half_built_is_finalized_quietly_inside_the_guards(monkeypatch):
    """CI printed "Exception ignored in: ApiDefMap.__del__ ... AttributeError" after "interrupted; nothing was
    written": the half-built object lived on in the traceback's frames until interpreter exit, after the guards
    had put the unraisable hook back. The guards free those frames before they end."""
    reached = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reached.append(info))
    monkeypatch.setattr(_HalfBuilt, "finalized", [])

    def library_call():
        try:
            _HalfBuilt(signal.SIGINT)
        except BaseException:
            raise TypeError("Binding inputs to tf.function failed") from None

    with pytest.raises(KeyboardInterrupt):
        with _output_folder.signal_guards():
            library_call()
    assert _HalfBuilt.finalized == [True] and reached == []
