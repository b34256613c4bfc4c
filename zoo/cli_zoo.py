"""`mtmm zoo list|info|train|evaluate`."""

from __future__ import annotations

import argparse
import json

from mtmm_keras.zoo import registry


def _headline(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:3]) or "(not trained)"


def run(args: argparse.Namespace) -> int:
    """Run one `mtmm zoo` sub-command (`list`, `info`, `evaluate`, `verify`, `train`); returns the exit status."""
    command = args.zoo_command
    if command == "list":
        names = registry.list()
        if not names:
            print("no zoo entries")
        for name in names:
            entry = registry.info(name)
            print(f"{name:<24} {entry['builder']:<17} {entry['data']:<14} {_headline(entry['metrics'])}")
        return 0
    if command == "info":
        print(json.dumps(registry.info(args.name), indent=2))
        return 0
    if command == "train":
        from mtmm_keras.zoo.training import train

        train(args.name, epochs=args.epochs, out_dir=args.out, overwrite=args.force, distribute=args.distribute)
        return 0
    if command == "verify":
        from mtmm_keras.zoo import verify

        folder = registry.resolve(args.name)[1]
        try:
            status = verify(args.name)
        except ValueError as err:
            print(f"✗ {err}")
            return 1
        for filename in status:
            print(f"  ✓ {filename}")
        print(f"{args.name} ({folder}): all {len(status)} files match metadata.json ✓")
        return 0
    from mtmm_keras.zoo.evaluation import evaluate

    result = evaluate(args.name, weights_dir=args.weights_dir)
    print(f"{args.name} on the {result['split']} split ({result['examples']} examples)")
    print(f"{'metric':<32}{'card':>10}{'measured':>10}")
    for key, value in result["measured"].items():
        card = result["card"].get(key)
        print(f"{key:<32}{(f'{card:.4f}' if card is not None else '-'):>10}{value:>10.4f}")
    return 0
