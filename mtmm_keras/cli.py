"""The `mtmm` command. TensorFlow/Keras load only inside the commands that need them, so `--help` is instant."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Sequence


# mk.distribute.ENGINES, spelled out so that `mtmm --help` loads no Keras (tests/test_distribute_cli.py compares them)
DISTRIBUTE_ENGINES = ("mirrored", "multi_worker", "jax")

def _quiet_backend() -> None:
    """Import the backend with TensorFlow's C++ start-up log (oneDNN, CUDA probing, absl) silenced, then freeze
    what the import made out of the cyclic garbage collector's reach.

    The env vars cover most of it; the absl/cudart lines printed before logging is initialised
    ignore them, so stderr is pointed at /dev/null for the duration of the import only.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (loads the backend once, quietly)

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when several models predict in turn
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # The half-million objects the backend import made live as long as this process: out of the cyclic garbage
    # collector's reach, every full collection after this (the TFLite converter forces two per flavour) skips them.
    gc.freeze()


def _cmd_demo(args: argparse.Namespace) -> int:
    _quiet_backend()
    from mtmm_keras import demo

    return demo.run(out_dir=args.out, epochs=args.epochs, seed=args.seed, entry=None if args.no_zoo else args.entry)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _cmd_export(args: argparse.Namespace) -> int:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    _quiet_backend()
    from mtmm_keras.export import cli_export

    return cli_export.run(args)


def _cmd_zoo(args: argparse.Namespace) -> int:
    from mtmm_keras.zoo import cli_zoo

    if args.zoo_command in ("train", "evaluate"):
        _quiet_backend()
    return cli_zoo.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The `mtmm` command's argument parser (`demo`, `zoo`, `export` sub-commands)."""
    from mtmm_keras import __version__

    parser = argparse.ArgumentParser(
        prog="mtmm",
        description="mtmm-keras: multi-task and multi-modal Keras models (build, train, export).",
    )
    parser.add_argument("--version", action="version", version=f"mtmm-keras {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="the main job: every builder end to end, then a zoo entry evaluated and exported",
        description="Build, fit, save (.keras) and safe-mode reload one model per builder on synthetic data; then load "
        "a pretrained zoo entry, evaluate it on its test split beside its card, and export it to every format with verification.",
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the saved .keras models (default: runs/demo)")
    demo.add_argument("--epochs", type=int, default=15, help="training epochs per model (default: 15)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for data and weights (default: 0)")
    demo.add_argument("--entry", default="mfeat_fusion", help="zoo entry to evaluate and export (default: mfeat_fusion)")
    demo.add_argument("--no-zoo", action="store_true", help="only the builder tour: skip the zoo evaluation and export")
    demo.set_defaults(handler=_cmd_demo)

    export = commands.add_parser(
        "export",
        help="export a .keras model (or zoo:NAME) to SavedModel / TFLite / ONNX and verify every artifact",
        description="Export SOURCE (a .keras file or zoo:NAME) and verify each artifact against the Keras model "
        "in its own runtime. Artifacts are moved into --out only when every check passes; exit status 1 otherwise.",
    )
    export.add_argument("source", help="path to a .keras model, or zoo:NAME")
    export.add_argument("--out", required=True, help="a new or empty output folder; artifacts move in only after every check passed")
    export.add_argument("--force", action="store_true", help="replace --out if it holds an earlier export (never any other folder)")
    export.add_argument("--target", default="server", help="deployment target, which picks formats, shapes, precision "
                        "and the runtime that verifies them: server (default), gpu-server, android-gpu, android-npu, "
                        "ios, openvino")
    export.add_argument("--format", type=_csv, default=None, help="comma list of saved_model,tflite,onnx (default: the "
                        "target's; server: all)")
    export.add_argument("--quantize", type=_csv, default=None, help="TFLite flavours: comma list of "
                        "float32,float16,dynamic,int8 (default: the target's; server: float32)")
    export.add_argument("--calibration-data", help=".npz with one array per model input (calibrates int8)")
    export.add_argument("--validation-data", help=".npz of held-out rows (never used for calibration) that judge quantized "
                        "artifacts: one array per model input, labels as 'label:<output>' (zoo:NAME uses its test split)")
    export.add_argument("--batch-size", type=int, default=None, help="fixed batch size (default: dynamic batch; "
                        "1 for the static targets android-gpu, android-npu, ios)")
    export.add_argument("--allow-flex", action="store_true", help="allow TensorFlow (Flex) ops in TFLite (most edge runtimes cannot run them)")
    export.add_argument("--per-tower", action="store_true", help="joint-embedding models: also export each modality tower on its own")
    export.add_argument("--with-attention", action="store_true", help="attention-fusion models: add the attention weights as an output")
    export.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE (a module name, or a .py file) before loading SOURCE, so the custom layers it "
                        "registers with @keras.saving.register_keras_serializable load; repeatable")
    export.set_defaults(handler=_cmd_export)

    zoo = commands.add_parser("zoo", help="pretrained entries: list, info, train, evaluate, verify",
                              description="Pretrained model zoo: list entries, show a card, retrain, evaluate or verify an entry.")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    zoo_commands.add_parser("list", help="the entries with their builder, data and headline metric")
    info = zoo_commands.add_parser("info", help="an entry's card: tasks, data, test metrics, size, sha256")
    info.add_argument("name")
    train = zoo_commands.add_parser("train", help="retrain an entry from scratch with its recipe (shows Keras progress)")
    train.add_argument("name")
    train.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    train.add_argument("--out", default=None, help="a new or empty folder for the preset (default: runs/zoo/NAME)")
    train.add_argument("--force", action="store_true", help="replace --out if it holds an earlier zoo entry (never any other folder)")
    train.add_argument("--distribute", choices=DISTRIBUTE_ENGINES, default=None,
                       help="train data-parallel: mirrored (TF, this host's devices), multi_worker (TF_CONFIG, or "
                            "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID on JAX; run the same command on every worker), jax (DataParallel)")
    verify = zoo_commands.add_parser("verify", help="re-check the sha256 of every file of an entry or preset folder")
    verify.add_argument("name", help="entry name or preset folder")
    evaluate = zoo_commands.add_parser("evaluate", help="measure an entry on its test split, beside the card's numbers")
    evaluate.add_argument("name")
    evaluate.add_argument("--weights-dir", default=None, help="evaluate weights retrained into this folder instead")
    evaluate.add_argument("--baselines", action="store_true", help="also fit the simple scikit-learn baselines on the "
                          "entry's train split and print the entry's margin over the best one per headline metric")
    evaluate.add_argument("--robustness", action="store_true", help="also measure the headline metrics under device "
                          "perturbations (brightness, 1-pixel shift, noise; audio volume and noise)")
    evaluate.add_argument("--ablations", action="store_true", help="also retrain the recipe's one-modality ablations "
                          "(not the entry) and print them beside the card's")
    evaluate.add_argument("--write", action="store_true", help="record the --baselines / --robustness / --ablations tables in the "
                          "entry's metadata.json and card.md (no retraining; checksums updated, swapped in atomically)")
    evaluate.add_argument("--max-fit-rows", type=int, default=None, metavar="N", help="cap on the train rows the "
                          "baselines fit on (a seeded subsample; 0: all; default: all up to 20 M cells, see the docs)")
    zoo.set_defaults(handler=_cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `mtmm` command with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    from mtmm_keras import _output_folder

    written_before = len(_output_folder.committed)
    try:
        with _output_folder.signal_guards():
            return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"mtmm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable file, read-only folder, full disk, ...: which file and why, not a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"mtmm {args.command}: error: {err.strerror or err}{where}; no output was written "
              "(any partial output was removed).", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _output_folder.SignalExit) as stop:
        sigterm = isinstance(stop, _output_folder.SignalExit)
        how = "interrupted by SIGTERM" if sigterm else "interrupted"
        done = _output_folder.committed[written_before:]
        if done:
            print(f"mtmm {args.command}: {how} after {', '.join(done)} was written completely.", file=sys.stderr)
        else:
            print(f"mtmm {args.command}: {how}; nothing was written (partial output removed).", file=sys.stderr)
        return stop.code if sigterm else 130


if __name__ == "__main__":
    sys.exit(main())
