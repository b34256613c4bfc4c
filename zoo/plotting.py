"""Per-task training curves (train and validation), and expert-gate weights, as PNGs beside the weights."""

from __future__ import annotations

from typing import Any, Iterator


def _panels(keys: list[str], path: str, title: str) -> Iterator[tuple[Any, str]]:
    """Yield (axes, key) for a grid of up to three panels per row; after the caller has drawn them,
    blank the spare panels and save the figure to `path` (headless backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    yield from zip(axes.flat, keys)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: str, title: str) -> None:
    """Plot each metric's train (and validation) curve from a Keras `history` dict into the PNG `path`."""
    keys = [k for k in history if not k.startswith("val_")]
    for ax, key in _panels(keys, path, title):
        epochs = range(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def plot_gates(gates: dict[str, Any], path: str, title: str) -> None:
    """One bar chart per gate (task): its weight on each expert, averaged over the test examples."""
    keys = list(gates)
    if not keys:
        raise ValueError("plot_gates: `gates` is empty; only models with expert gates have a gates plot.")
    for ax, key in _panels(keys, path, title):
        weights = [float(w) for w in gates[key]]
        ax.bar(range(len(weights)), weights)
        ax.set_title(f"gate {key}")
        ax.set_xlabel("expert")
        ax.set_ylabel("mean weight")
        ax.set_xticks(range(len(weights)))
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3, axis="y")
