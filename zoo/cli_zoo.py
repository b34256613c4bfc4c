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
    tables = tuple(t for t in ("baselines", "robustness", "ablations") if getattr(args, t, False))
    if getattr(args, "write", False) and not tables:
        print("error: --write records the --baselines, --robustness and/or --ablations tables; pass one or more of "
              "them (valid: --baselines, --robustness, --ablations).")
        return 2
    from mtmm_keras.zoo import quality

    try:
        max_fit_rows = quality.check_max_fit_rows(getattr(args, "max_fit_rows", None), argument="--max-fit-rows")
    except ValueError as err:
        print(f"error: {err}")
        return 2
    from mtmm_keras.zoo.evaluation import evaluate

    result = evaluate(args.name, weights_dir=args.weights_dir)
    print(f"{args.name} on the {result['split']} split ({result['examples']} examples)")
    print(f"{'metric':<32}{'card':>10}{'measured':>10}")
    for key, value in result["measured"].items():
        card = result["card"].get(key)
        print(f"{key:<32}{(f'{card:.4f}' if card is not None else '-'):>10}{value:>10.4f}")
    if not tables:
        return 0
    report = quality.evaluate_quality(args.name, weights_dir=args.weights_dir, tables=tables, max_fit_rows=max_fit_rows)
    measured, card = report["measured"], report["card"]
    if "simple_baselines" in measured:
        _print_baselines(measured["simple_baselines"], card.get("simple_baselines"))
    if "robustness" in measured:
        _print_robustness(measured["robustness"], card.get("robustness"))
    if "baselines" in measured:
        print("\nablations (the recipe retrained on one modality at a time)")
        for subset, metrics in measured["baselines"].items():
            on_card = (card.get("baselines") or {}).get(subset, {})
            for key, value in metrics.items():
                print(f"{subset:<24}{key:<32}{_cell(on_card.get(key)):>10}{value:>10.4f}")
    if args.write:
        quality.write(args.name, measured, weights_dir=args.weights_dir)
        print(f"wrote {', '.join(sorted(measured))} into {report['folder']}/{{{registry.METADATA_FILE}, {registry.CARD_FILE}}} "
              "(checksums updated)")
    failures = quality.floor_failures(measured) if "simple_baselines" in measured else []
    for failure in failures:
        print(f"below the quality floor: {failure}")
    return 0


def _cell(value: float | None, fmt: str = "{:.4f}") -> str:
    return fmt.format(value) if value is not None else "-"


def _print_baselines(measured: dict, card: dict | None) -> None:
    """The simple-baselines table: per headline metric the card's and the measured entry, baseline and margin."""
    method = measured["method"]
    print(f"\nsimple baselines ({', '.join(method['baselines'])}; fitted on {method['fit_rows']} of "
          f"{method['train_rows']} train rows, HGB on {method.get('hgb_fit_rows', method['fit_rows'])}; "
          f"{measured['seconds']:.0f} s)")
    on_card = {row["key"]: row for row in (card or {}).get("headline", [])}
    print(f"{'headline metric':<30}{'entry':>9}{'best baseline':>34}{'value':>9}{'margin':>9}{'95% interval':>20}"
          f"{'card margin':>13}")
    for row in measured["headline"]:
        low, high = row["ci95"]
        card_margin = on_card.get(row["key"], {}).get("margin")
        print(f"{row['key']:<30}{row['entry']:>9.4f}{row['best_baseline']:>34}{row['baseline']:>9.4f}{row['margin']:>+9.4f}"
              f"{f'[{low:+.4f}, {high:+.4f}]':>20}{_cell(card_margin, '{:+.4f}'):>13}")
    for flag in measured["flags"]:
        print(f"flag: {flag}")


def _print_robustness(measured: dict, card: dict | None) -> None:
    """The robustness table: each perturbation's drop per headline metric, measured and on the card."""
    print(f"\nrobustness (drop = how much worse than clean; {measured['seconds']:.0f} s)")
    if not measured["perturbations"]:
        print(f"no device perturbation applies to {', '.join(measured['not_applicable'])} inputs")
        return
    on_card = (card or {}).get("perturbations", {})
    print(f"{'perturbation':<36}{'metric':<30}{'perturbed':>10}{'drop':>9}{'card drop':>11}")
    for name, result in measured["perturbations"].items():
        for key, value in result["metrics"].items():
            card_drop = on_card.get(name, {}).get("drop", {}).get(key)
            print(f"{name:<36}{key:<30}{value:>10.4f}{result['drop'][key]:>+9.4f}{_cell(card_drop, '{:+.4f}'):>11}")
