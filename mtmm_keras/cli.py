"""The `mtmm` command. TensorFlow/Keras load only inside the commands that need them, so `--help` is instant."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def _quiet_backend() -> None:
    """Silence TensorFlow's C++ start-up log (oneDNN, CUDA probing) before anything imports it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def _cmd_demo(args: argparse.Namespace) -> int:
    _quiet_backend()
    from mtmm_keras import demo

    return demo.run(out_dir=args.out, epochs=args.epochs, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from mtmm_keras import __version__

    parser = argparse.ArgumentParser(
        prog="mtmm",
        description="mtmm-keras: multi-task and multi-modal Keras models (build, train, export).",
    )
    parser.add_argument("--version", action="version", version=f"mtmm-keras {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="build, fit, save and reload one model of each builder kind on small offline problems",
        description="Build, fit, save (.keras) and safe-mode reload one model per builder on synthetic data.",
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the saved .keras models (default: runs/demo)")
    demo.add_argument("--epochs", type=int, default=15, help="training epochs per model (default: 15)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for data and weights (default: 0)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"mtmm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
