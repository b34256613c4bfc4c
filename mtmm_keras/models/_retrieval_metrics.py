"""Retrieval metrics during `fit` on a joint-embedding model: `compile(metrics=[RecallAtK(query=..., gallery=...)])`.

Keras's compiled metrics get one output tensor each; a retrieval metric needs two modalities' embeddings
and the group ids. So `compile` keeps such metrics (those with `reads_embeddings`) aside, gives the rest
to Keras, and `compute_metrics` feeds each kept metric the whole dict of embeddings with `y` as group ids.
They are listed in `model.metrics` (so they are reset, logged, and carried as state on JAX) and stay in
the compile config, so a saved model recompiles with them on reload.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras


def _reads_embeddings(metric: Any) -> bool:
    return bool(getattr(metric, "reads_embeddings", False))


class RetrievalMetricsMixin:
    """Mixin for `keras.Model` subclasses whose outputs are a dict of embeddings and whose `y` is group ids."""

    def compile(self, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        from mtmm_keras.distribute import check_compile_arguments

        check_compile_arguments(arguments.get("steps_per_execution", 1))  # >1 on torch: our error, at compile
        metrics = arguments.get("metrics")
        kept: list[Any] = []
        if isinstance(metrics, (list, tuple)):
            kept = [m for m in metrics if _reads_embeddings(m)]
            others = [m for m in metrics if not _reads_embeddings(m)]
            arguments["metrics"] = others or None
        super().compile(**arguments)
        object.__setattr__(self, "_retrieval_metrics", tuple(kept))  # outside Keras's attribute tracking
        config = getattr(self, "_compile_config", None)  # Keras internal: what `save` writes as the compile config
        if kept and config is not None and isinstance(getattr(config, "config", None), dict):
            config.config["metrics"] = metrics  # saved as given: reload recompiles with them
        elif kept:
            warnings.warn(
                "This Keras keeps no `_compile_config` dict, so the retrieval metrics "
                f"{[getattr(m, 'name', m) for m in kept]} train and log as usual but are not saved with the model: "
                "compile them again after keras.models.load_model.", RuntimeWarning, stacklevel=2)

    @property
    def metrics(self) -> list[Any]:
        metrics = super().metrics
        if getattr(self, "compiled", False):
            metrics = metrics + [m for m in self.__dict__.get("_retrieval_metrics", ()) if m not in metrics]
        return metrics

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras's compiled metrics, plus the retrieval metrics on the dict of embeddings (`y`: group ids;
        a pairwise loss's `y` holds pair labels, not groups, so then row i matches row i only)."""
        kept = self.__dict__.get("_retrieval_metrics", ())
        if kept:
            groups = None if getattr(getattr(self, "loss", None), "pairwise", False) else y
            for metric in kept:
                metric.update_state(groups, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)
