"""`mtmm export` and `mk.export` from a user's side: folders that hold other files, earlier exports, bad
arguments checked before the disk is touched, kills and full disks, and checks that never overstate."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.export import api
from reliability_helpers import assert_clean_cli_error, run_cli, tree_listing

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")


def _tiny_model():
    model = mk.builders.hard_sharing((4,), [mk.Task("a", 1), mk.Task("k", 3, loss="sparse_categorical_crossentropy")],
                                     trunk_units=(8,))
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 4)).astype("float32"), {"a": rng.normal(size=(64, 1)), "k": rng.integers(0, 3, 64)},
              epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    model = _tiny_model()
    path = folder / "m.keras"
    model.save(path)
    return path


def _export_cli(source, out, *extra, cwd=None):
    return run_cli("export", str(source), "--out", str(out), "--format", "onnx", *extra, cwd=cwd)


def _cli_here(capsys, monkeypatch, *argv, cwd=None):
    """The same `mtmm` entry point, run in this process (fast) for the many argument cases."""
    from mtmm_keras.cli import main

    if cwd is not None:
        monkeypatch.chdir(cwd)
    code = main(list(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


# --- defect 1: --out never deletes what the tool did not write -------------------------------------------
def test_cli_refuses_a_user_folder_and_leaves_it_untouched(saved_model, user_folder):
    before = tree_listing(user_folder.parent)
    result = _export_cli(saved_model, user_folder)
    assert_clean_cli_error(result, "holds files this tool did not write", "important.csv")
    assert result.returncode == 2
    assert tree_listing(user_folder.parent) == before


def test_cli_force_still_refuses_a_user_folder(saved_model, user_folder, capsys, monkeypatch):
    before = tree_listing(user_folder.parent)
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(user_folder), "--force")
    assert_clean_cli_error(result, "even with overwrite/--force")
    assert tree_listing(user_folder.parent) == before


def test_cli_out_dot_keeps_the_project_and_the_source(saved_model, user_folder):
    model_copy = user_folder / "m.keras"
    model_copy.write_bytes(saved_model.read_bytes())
    before = tree_listing(user_folder)
    result = _export_cli("m.keras", ".", "--force", cwd=user_folder)
    assert_clean_cli_error(result, "'.' is a folder that holds files this tool did not write")
    assert tree_listing(user_folder) == before


def test_cli_empty_out_is_refused(saved_model, tmp_path, capsys, monkeypatch):
    (tmp_path / "keep.txt").write_text("x")
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", "", cwd=tmp_path)
    assert_clean_cli_error(result, "`--out` is empty")
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_cli_existing_file_is_refused_not_renamed(saved_model, tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.onnx"
    target.write_text("mine")
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(target))
    assert_clean_cli_error(result, "is an existing file, not a folder")
    assert os.listdir(tmp_path) == ["out.onnx"] and target.read_text() == "mine"


def test_cli_earlier_export_needs_force_and_is_then_replaced(saved_model, user_folder, capsys, monkeypatch):
    out = user_folder / "exports"
    api.export_model(keras.models.load_model(saved_model), str(out), formats=("onnx",), verbose=False)
    before = tree_listing(user_folder)
    again = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(out))
    assert_clean_cli_error(again, "already holds an earlier export", "--force")
    assert tree_listing(user_folder) == before
    forced = _export_cli(saved_model, out, "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    after = tree_listing(user_folder, skip="exports")
    assert after == {k: v for k, v in before.items() if not k.startswith("exports")}
    assert sorted(os.listdir(user_folder)) == [".env", "exports", "important.csv", "src"]


# --- defect 2: every argument is checked before the disk is touched ---------------------------------------
@pytest.mark.parametrize("extra, message", [
    (("--per-tower",), "no '<modality>_tower' sub-models"),
    (("--quantize", "int4", "--format", "tflite"), "`--quantize` must be one of"),
    (("--format", "coreml"), "`--format` must be one of"),
    (("--batch-size", "0"), "`--batch-size` must be a positive integer"),
    (("--quantize", "int8", "--format", "tflite"), "needs `--calibration-data`"),
    (("--calibration-data", "missing.npz"), "--calibration-data 'missing.npz' does not exist"),
    (("--with-attention",), "attention"),
])
def test_cli_bad_arguments_leave_an_earlier_export_intact(saved_model, tmp_path, extra, message, capsys, monkeypatch):
    out = tmp_path / "out"
    api.export_model(keras.models.load_model(saved_model), str(out), formats=("onnx",), verbose=False)
    before = tree_listing(tmp_path)
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(out), "--force", *extra, cwd=tmp_path)
    assert_clean_cli_error(result, message)
    assert tree_listing(tmp_path) == before


def test_cli_corrupt_calibration_file_names_the_file_and_the_fix(saved_model, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "calib.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(tmp_path / "out"),
                       "--calibration-data", str(bad))
    assert_clean_cli_error(result, "calib.npz", "numpy.savez")
    assert sorted(os.listdir(tmp_path)) == ["calib.npz"]


def test_cli_calibration_with_wrong_input_name_is_refused_before_writing(saved_model, tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "calib.npz", pixels=np.zeros((8, 4), "float32"))
    result = _cli_here(capsys, monkeypatch, "export", str(saved_model), "--out", str(tmp_path / "out"), "--format",
                       "tflite", "--quantize", "int8", "--calibration-data", str(tmp_path / "calib.npz"))
    assert_clean_cli_error(result, "keyed by the model's inputs ['features']", "['pixels']")
    assert sorted(os.listdir(tmp_path)) == ["calib.npz"]


# --- defect 6 / item 7: checks never overstate; manifests stay true when copied ---------------------------
def test_unverified_export_says_so_everywhere(tmp_path):
    model = _tiny_model()
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("onnx",), verify=False, verbose=False)
    assert report.passed is False and report.verified is False and not report.failed
    assert "NOT VERIFIED" in report.table() and "all artifacts verified" not in report.table()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["verified"] is False and manifest["passed"] is None
    assert [a["status"] for a in manifest["artifacts"]] == ["unverified"]


def test_quantized_artifacts_are_judged_on_rows_never_used_for_calibration(tmp_path, monkeypatch):
    model = _tiny_model()
    calibration_rows = []
    from mtmm_keras.export import tflite_writer

    real_convert = tflite_writer.convert

    def spy(saved_model_dir, flavour, representative=None, allow_flex=False, **options):
        if representative is not None:
            calibration_rows.extend(row["features"][0].tobytes() for row in representative())
        return real_convert(saved_model_dir, flavour, representative, allow_flex, **options)

    monkeypatch.setattr(tflite_writer, "convert", spy)
    data = np.random.default_rng(1).normal(size=(100, 4)).astype("float32")
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                                    representative_data=data, verbose=False)  # a bare array: single-input model
    assert report.passed and len(calibration_rows) == 80
    assert report.holdout.startswith("representative_data rows 80..99, never used for calibration")
    assert report.holdout_rows == 20 and not set(r.tobytes() for r in data[80:]) & set(calibration_rows)


def test_validation_data_judges_quantized_artifacts_with_labels(tmp_path):
    model = _tiny_model()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = {"k": rng.integers(0, 3, 40)}
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("dynamic",),
                                    representative_data=x, validation_data=(x, y), verbose=False)
    assert report.holdout == "validation_data (40 rows)"
    check = next(c for c in report.artifacts[0].checks if c.name == "k")
    assert check.metric == "accuracy"


def test_manifest_paths_are_relative_and_folders_readable_by_others(tmp_path):
    model = _tiny_model()
    out = tmp_path / "out"
    mk.export.export_model(model, str(out), formats=("saved_model", "onnx"), verbose=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert str(tmp_path) not in json.dumps(manifest)
    moved = tmp_path / "moved"
    os.rename(out, moved)
    for artifact in manifest["artifacts"]:
        assert (moved / artifact["path"]).exists()
    for root, dirs, _ in os.walk(moved):
        for d in [root, *(os.path.join(root, x) for x in dirs)]:
            assert os.stat(d).st_mode & 0o005 == 0o005, d  # others may read and enter


@pytest.mark.parametrize("bad, error, message", [
    (np.full((8, 4), np.nan, "float32"), ValueError, "NaN or infinite values \\(first in row 0\\)"),
    (np.zeros((0, 4), "float32"), ValueError, "is empty"),
    (np.zeros((8, 5), "float32"), ValueError, "rows of shape \\[5\\]; the model's input 'features' takes rows of shape \\[4\\]"),
    (np.array([["a"] * 4] * 8), TypeError, "has dtype <U1"),
    ({"features": np.zeros((8, 4)), "extra": np.zeros((8, 4))}, ValueError, "keyed by the model's inputs"),
])
def test_bad_representative_data_is_refused_before_anything_is_written(tmp_path, bad, error, message):
    model = _tiny_model()
    with pytest.raises(error, match=message):
        mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                               representative_data=bad, verbose=False)
    assert os.listdir(tmp_path) == []


def test_float64_calibration_is_cast_up_front(tmp_path):
    model = _tiny_model()
    data = np.random.default_rng(0).normal(size=(1000, 4))  # float64
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                                    representative_data=data, verbose=False)
    assert report.passed


def test_validation_labels_for_unknown_outputs_are_refused(tmp_path):
    model = _tiny_model()
    x = np.zeros((8, 4), "float32")
    with pytest.raises(ValueError, match="unknown outputs \\['kk'\\]; the model's outputs are \\['a', 'k'\\]"):
        mk.export.export_model(model, str(tmp_path / "out"), validation_data=(x, {"kk": np.zeros(8)}), verbose=False)
    assert os.listdir(tmp_path) == []


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(ImportError, match='needs tf2onnx, which is not installed: pip install "mtmm-keras\\[export\\]"'):
        mk.export.export_model(_tiny_model(), str(tmp_path / "out"), formats=("onnx",), verbose=False)
    assert os.listdir(tmp_path) == []


# --- kills, signals and full disks --------------------------------------------------------------------------
def _start_export(saved_model, out, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "mtmm_keras.cli", "export", str(saved_model), "--out", str(out), "--force",
                             "--format", "saved_model,tflite,onnx", "--quantize", "float32,float16,dynamic"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_staging(folder, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(".mtmm-staging-" in name for name in os.listdir(folder)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_export_keeps_the_earlier_export_and_its_leftovers_are_cleaned(saved_model, tmp_path, signum):
    out = tmp_path / "out"
    api.export_model(keras.models.load_model(saved_model), str(out), formats=("onnx",), verbose=False)
    (tmp_path / "notes.txt").write_text("mine")
    before = tree_listing(tmp_path)
    proc = _start_export(saved_model, out, tmp_path)
    assert _wait_for_staging(tmp_path, proc), proc.communicate()
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 143, signal.SIGINT: 130}[signum], err[-2000:]
    leftovers = [n for n in os.listdir(tmp_path) if ".mtmm-staging-" in n]
    if signum != signal.SIGKILL:  # SIGTERM/SIGINT unwind: the staging folder is removed at once
        assert leftovers == [] and "Traceback" not in err, err[-2000:]
        how = "interrupted by SIGTERM" if signum == signal.SIGTERM else "interrupted"
        assert f"mtmm export: {how}; nothing was written (partial output removed)." in err, err[-2000:]
    assert tree_listing(tmp_path, skip=leftovers[0] if leftovers else None) == before
    if signum != signal.SIGKILL:
        return  # nothing was left beside the earlier export (the listing above): no cleaning for a next run to do
    again = _export_cli(saved_model, out, "--force")  # the next run cleans what the killed one left
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "out"]


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_no_partial_output(saved_model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    before = tree_listing(tmp_path)
    limit = ("import resource, signal, sys, runpy; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); sys.argv = ['mtmm'] + sys.argv[1:]; "
             "from mtmm_keras.cli import main; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", limit, "export", str(saved_model), "--out", str(tmp_path / "out"),
                             "--format", "tflite"], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert_clean_cli_error(result, "File too large", "no output was written")
    assert tree_listing(tmp_path) == before


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "is not a .keras archive"),
    (b"", "is empty"),
])
def test_cli_corrupt_or_truncated_source_names_the_file(tmp_path, capsys, monkeypatch, content, message):
    (tmp_path / "m.keras").write_bytes(content)
    result = _cli_here(capsys, monkeypatch, "export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"))
    assert_clean_cli_error(result, "m.keras", message)
    assert os.listdir(tmp_path) == ["m.keras"]


def test_cli_truncated_keras_file_is_not_reported_as_missing(saved_model, tmp_path, capsys, monkeypatch):
    data = saved_model.read_bytes()
    (tmp_path / "m.keras").write_bytes(data[: len(data) // 2])
    result = _cli_here(capsys, monkeypatch, "export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"))
    assert_clean_cli_error(result, "m.keras")
    assert "not found" not in result.stderr.lower() and "does not exist" not in result.stderr
    assert os.listdir(tmp_path) == ["m.keras"]


def test_head_kinds_come_from_the_models_tasks_not_from_compile(tmp_path):
    from mtmm_keras.export import verify

    compiled = _tiny_model()
    bare = mk.builders.hard_sharing((4,), [mk.Task("a", 1), mk.Task("k", 3, loss="sparse_categorical_crossentropy"),
                                           mk.Task("b", 1, loss="binary_crossentropy", activation="sigmoid")],
                                    trunk_units=(8,), compile=False)
    assert verify.output_kinds(compiled) == {"a": ("continuous", False), "k": ("categorical", True)}
    assert verify.output_kinds(bare) == {"a": ("continuous", False), "k": ("categorical", True), "b": ("binary", False)}
    bare.save(tmp_path / "bare.keras")  # the tasks travel in the model's config
    reloaded = keras.models.load_model(tmp_path / "bare.keras")
    assert verify.output_kinds(reloaded) == verify.output_kinds(bare)
    fusion = mk.builders.attention_fusion({"p": mk.encoders.tabular(3, input_name="p", name="p_enc"),
                                           "q": mk.encoders.tabular(2, input_name="q", name="q_enc")},
                                          [mk.Task("c", 4, loss="sparse_categorical_crossentropy")], fusion_dim=4)
    with_attention = mk.builders.with_attention_output(fusion)
    assert verify.output_kinds(with_attention) == {"c": ("categorical", True), "attention": ("continuous", False)}


def test_uncompiled_classifier_is_judged_by_agreement_when_quantized(tmp_path):
    bare = mk.builders.hard_sharing((4,), [mk.Task("k", 3, loss="sparse_categorical_crossentropy")], trunk_units=(8,),
                                    compile=False)
    data = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
    report = mk.export.export_model(bare, str(tmp_path / "out"), formats=("tflite",), quantize=("dynamic",),
                                    representative_data=data, verbose=False)
    assert report.artifacts[0].checks[0].metric == "agreement"


def test_int8_with_too_few_rows_to_hold_out_is_refused_up_front(tmp_path):
    model = _tiny_model()
    data = np.random.default_rng(3).normal(size=(20, 4)).astype("float32")  # a fifth is 4 rows: too few to judge
    with pytest.raises(ValueError, match="at least 80 rows of `representative_data`.*got 20 rows"):
        mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                               representative_data=data, verbose=False)
    assert os.listdir(tmp_path) == []
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                                    representative_data=data, validation_data=(data * 0.9,), verbose=False)
    assert report.holdout == "validation_data (20 rows)"


def test_validation_rows_that_calibration_saw_are_refused(tmp_path):
    model = _tiny_model()
    data = np.random.default_rng(4).normal(size=(50, 4)).astype("float32")
    with pytest.raises(ValueError, match="`validation_data` shares 10 rows with `representative_data`"):
        mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                               representative_data=data, validation_data=(data[40:],), verbose=False)
    assert os.listdir(tmp_path) == []


def test_force_never_replaces_an_earlier_export_holding_the_source_model(saved_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "exp"
    api.export_model(keras.models.load_model(saved_model), str(out), formats=("onnx",), verbose=False)
    (out / "m.keras").write_bytes(saved_model.read_bytes())  # the user saved the model next to its export
    before = tree_listing(tmp_path)
    result = _cli_here(capsys, monkeypatch, "export", str(out / "m.keras"), "--out", str(out), "--force")
    assert_clean_cli_error(result, "also files it did not write (m.keras)")
    assert tree_listing(tmp_path) == before


@pytest.mark.parametrize("kwargs, error, message", [
    ({"atol": "1e-4"}, TypeError, "`atol` must be a finite number >= 0, got str"),
    ({"atol": -1.0}, ValueError, "`atol` must be a finite number >= 0, got -1.0"),
    ({"opset": 0}, ValueError, "`opset` must be a positive integer"),
    ({"verify": "no"}, TypeError, "`verify` must be True or False"),
    ({"overwrite": "false"}, TypeError, "`overwrite` must be True or False"),
])
def test_option_types_are_checked_before_anything_runs(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        mk.export.export_model(_tiny_model(), str(tmp_path / "out"), formats=("onnx",), verbose=False, **kwargs)
    assert os.listdir(tmp_path) == []


def test_cli_bad_format_is_refused_before_the_model_is_loaded(tmp_path, capsys, monkeypatch):
    from mtmm_keras.export import cli_export

    monkeypatch.setattr(cli_export, "load_source", lambda *a: pytest.fail("model loaded before options were checked"))
    result = _cli_here(capsys, monkeypatch, "export", "zoo:mfeat_fusion", "--out", str(tmp_path / "o"), "--format", "onxx")
    assert_clean_cli_error(result, "`--format` must be one of")
    assert os.listdir(tmp_path) == []


def test_a_ctrl_c_inside_the_verifying_runtime_is_not_reported_as_a_failed_verification(saved_model, tmp_path,
                                                                                         monkeypatch):
    """A signal landing inside TensorFlow while the SavedModel is verified came out as a TypeError, which the
    verifier took for the runtime rejecting the artifact: `mtmm export` printed a failed-verification table and
    exited 1 for a Ctrl-C. After a signal, the verifier's error is the interruption."""
    from mtmm_keras import _output_folder
    from mtmm_keras.export import pipeline

    received, signal_lands = [], [True]
    monkeypatch.setattr(_output_folder, "_signals_received", received)

    def runner_hit_by_a_signal(path):
        if signal_lands:
            received.append(signal.SIGINT)
        raise TypeError("Binding inputs to tf.function failed")

    monkeypatch.setattr(pipeline.runtimes, "saved_model_runner", runner_hit_by_a_signal)
    (tmp_path / "notes.txt").write_text("mine")
    before = tree_listing(tmp_path)
    model = keras.models.load_model(saved_model)
    with pytest.raises(KeyboardInterrupt, match="nothing was written"):
        api.export_model(model, str(tmp_path / "out"), formats=("saved_model",), verbose=False)
    assert tree_listing(tmp_path) == before
    received.clear(), signal_lands.clear()  # without a signal the same error is the runtime's verdict on the artifact
    with pytest.raises(api.ExportVerificationError, match="verification failed"):
        api.export_model(model, str(tmp_path / "out"), formats=("saved_model",), verbose=False)
