"""Simple baselines on a zoo entry's own train/test split: what a data scientist tries first.

Fitted on the entry's train split (`evaluation.split_arrays(recipe, "train")`), scored on its test split,
each with scikit-learn, per task:
- `majority / mean`: `DummyClassifier(strategy="prior")` (predicts the majority class, scores every row
  alike) or `DummyRegressor(strategy="mean")`;
- `linear`: `LogisticRegression` (lbfgs, C=1) or `Ridge` (alpha=1) on standardised dense features, with
  the text bag of words appended as raw counts;
- `hgb`: `HistGradientBoostingClassifier` / `...Regressor` (random_state=0, sklearn's defaults) on the
  dense features (images mean-pooled over 2 × 2 pixel blocks, to keep its cost small); a text modality enters as the out-of-fold (5-fold) decision scores of a linear model
  on its bag of words (stacking: HGB cannot take 8k sparse columns cheaply); the test rows get the scores
  of that linear model refitted on every fitting row.

Features per modality (`modality_features`), concatenated for multi-modal entries:
- tabular: the raw columns (NaN imputed with the train mean for the linear model; HGB takes NaN);
- image: the flattened pixels, scaled to [0, 1] for uint8;
- text: word ids as a bag of words (sparse counts over the vocabulary; id 0, the padding, is dropped);
- audio: the library's log-mel front end (`mtmm_keras._mel` filters with the recipe's `frontend`
  settings, standardised per example like the model's) summarised by the mean of each mel bin over 4
  equal time segments and its standard deviation over the whole clip (5 × bins numbers per clip).

Joint-embedding (retrieval) entries: `linear` and `hgb` class-probability embeddings — per modality, the
classifier above predicts the item's group (`group_label`) from that modality alone; its test-row
probabilities, L2-normalised, are the embedding, and items are compared by cosine with the same metric
code the entry uses (`mtmm_keras.retrieval`). No shared raw space exists between images and audio, so a
raw-feature cosine baseline does not apply.

Cost (`fit_row_limits`): the linear model fits every train row while rows × dense columns ≤ 20 M, else a
seeded subsample of max(20,000, 20 M / columns) rows (`max_fit_rows` overrides: a cap, 0 for all rows); HGB
fits on at most max(5,000, 1 M / its columns) of those. The card says how many rows each used. BLAS/OpenMP
threads are capped at `threads` (default 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mtmm_keras.zoo import headline

FIT_CELLS = 20_000_000  # the linear model fits every train row up to this many dense cells (rows × columns) ...
MIN_FIT_ROWS = 20_000  # ... else a seeded subsample of max(MIN_FIT_ROWS, FIT_CELLS // columns) rows
HGB_CELLS = 1_000_000  # HGB grows one tree per class per round, the dear one on wide inputs: at most
HGB_MIN_ROWS = 5_000  # max(HGB_MIN_ROWS, HGB_CELLS // its columns) of the linear model's rows
IMAGE_POOL = 2  # HGB sees images mean-pooled over IMAGE_POOL × IMAGE_POOL pixel blocks (4× fewer columns)
THREADS = 1  # one thread: OpenMP workers spin-wait, which on a shared 2-core machine costs far more than it gains
SEED = 0
AUDIO_SEGMENTS = 4
OOF_FOLDS = 5
BASELINES = ("majority / mean", "linear", "hgb")
RETRIEVAL_BASELINES = ("linear class-probability embedding", "hgb class-probability embedding")


def _sparse():
    import scipy.sparse

    return scipy.sparse


def audio_summary(waveforms: np.ndarray, frontend: dict[str, Any] | None = None) -> np.ndarray:
    """[n, 5 × bins] float32: per-example standardised log-mel power (the library's mel filters, Hann
    frames, as the model's front end), each bin's mean over `AUDIO_SEGMENTS` equal time segments, and its
    standard deviation over the clip. A [n, frames, bins] input is taken as a spectrogram already."""
    from mtmm_keras import _mel

    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim == 3:
        spectra = waveforms
    else:
        if waveforms.ndim != 2:
            raise ValueError(f"audio features need [n, samples] waveforms or [n, frames, bins] spectrograms; got {waveforms.shape}.")
        settings = {"sample_rate": _mel.SAMPLE_RATE, "frame_length": _mel.FRAME_LENGTH, "hop": _mel.HOP,
                    "num_mel_bins": _mel.NUM_MEL_BINS, "fmin": _mel.FMIN, "fmax": _mel.FMAX, "standardize": True,
                    **(frontend or {})}
        frame, hop = int(settings["frame_length"]), int(settings["hop"])
        frames = 1 + (waveforms.shape[1] - frame) // hop
        filters = _mel.mel_filterbank(int(settings["num_mel_bins"]), frame, int(settings["sample_rate"]),
                                      float(settings["fmin"]), float(settings["fmax"])).astype(np.float32)
        window = np.hanning(frame).astype(np.float32)
        index = np.arange(frames)[:, None] * hop + np.arange(frame)[None, :]
        spectra = np.empty((len(waveforms), frames, filters.shape[1]), np.float32)
        for start in range(0, len(waveforms), 512):  # bounded memory: 512 clips' frames at a time
            chunk = waveforms[start:start + 512][:, index] * window
            power = np.abs(np.fft.rfft(chunk, axis=-1)) ** 2
            spectra[start:start + 512] = np.log(power.astype(np.float32) @ filters + 1e-10)
        if settings.get("standardize", True):
            mean = spectra.mean(axis=(1, 2), keepdims=True)
            spectra = (spectra - mean) / (spectra.std(axis=(1, 2), keepdims=True) + 1e-6)
    segments = np.array_split(np.arange(spectra.shape[1]), AUDIO_SEGMENTS)
    parts = [spectra[:, seg].mean(axis=1) for seg in segments] + [spectra.std(axis=1)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def modality_features(recipe: dict[str, Any], x: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each modality's baseline features (dense float32, or sparse counts for text), by its encoder kind."""
    features = {}
    for modality, spec in recipe["encoders"].items():
        kind, data = spec.get("kind"), np.asarray(x[modality])
        if kind == "text":
            ids = data.reshape(len(data), -1).astype(np.int64)
            vocab = max(int(spec.get("vocab_size", 0)), int(ids.max(initial=0)) + 1)
            rows, flat = np.repeat(np.arange(len(ids)), ids.shape[1]), ids.reshape(-1)
            words = flat != 0  # id 0 is the padding
            counts = _sparse().csr_matrix((np.ones(int(words.sum()), np.float32), (rows[words], flat[words])),
                                          shape=(len(ids), vocab))
            counts.sum_duplicates()
            features[modality] = counts
        elif kind == "audio":
            features[modality] = audio_summary(data, spec.get("frontend"))
        elif kind == "image":
            flat = data.reshape(len(data), -1).astype(np.float32)
            features[modality] = flat / 255.0 if data.dtype == np.uint8 else flat
        else:
            features[modality] = data.reshape(len(data), -1).astype(np.float32)
    return features


def _pooled(images: np.ndarray) -> np.ndarray:
    """[n, H, W(, C)] images mean-pooled over IMAGE_POOL × IMAGE_POOL blocks, flattened (HGB's image features)."""
    images = np.asarray(images, dtype=np.float32)
    images = images.reshape(images.shape[:3] + (-1,)) if images.ndim >= 3 else images
    if images.ndim != 4:
        return images.reshape(len(images), -1)
    n, height, width, channels = images.shape
    h, w = height - height % IMAGE_POOL, width - width % IMAGE_POOL
    blocks = images[:, :h, :w].reshape(n, h // IMAGE_POOL, IMAGE_POOL, w // IMAGE_POOL, IMAGE_POOL, channels)
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def hgb_features(recipe: dict[str, Any], features: dict[str, Any], x: dict[str, np.ndarray]) -> dict[str, Any]:
    """`features` with each image modality replaced by its pooled pixels (what HGB fits on)."""
    return {m: (_pooled(np.asarray(x[m])) / (255.0 if np.asarray(x[m]).dtype == np.uint8 else 1.0)
                if recipe["encoders"][m].get("kind") == "image" else f) for m, f in features.items()}


def describe_features(recipe: dict[str, Any]) -> dict[str, str]:
    """One line per modality saying which features the baselines use (written on the card)."""
    words = {
        "tabular": "raw columns",
        "image": f"flattened pixels (uint8 scaled to [0, 1]); HGB: mean-pooled over {IMAGE_POOL}×{IMAGE_POOL} blocks",
        "text": "bag of words (sparse word-id counts); HGB gets a 5-fold out-of-fold linear score of it",
        "audio": f"log-mel (library front end) mean per bin over {AUDIO_SEGMENTS} time segments + std over the clip",
    }
    return {m: words.get(spec.get("kind"), "raw values, flattened") for m, spec in recipe["encoders"].items()}


def _split(features: dict[str, Any]) -> tuple[np.ndarray | None, Any]:
    dense = [f for f in features.values() if not _sparse().issparse(f)]
    sparse = [f for f in features.values() if _sparse().issparse(f)]
    dense = np.concatenate(dense, axis=1) if dense else None
    sparse = _sparse().hstack(sparse).tocsr() if sparse else None
    return dense, sparse


def _classifier(kind: str, model: str) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    regression = kind == "regression"
    if model == "majority / mean":
        return DummyRegressor(strategy="mean") if regression else DummyClassifier(strategy="prior")
    if model == "linear":
        return Ridge(alpha=1.0) if regression else LogisticRegression(C=1.0, max_iter=500)
    return HistGradientBoostingRegressor(random_state=SEED) if regression else HistGradientBoostingClassifier(random_state=SEED)


def _decision(estimator: Any, features: Any) -> np.ndarray:
    """A linear model's scores as columns: [n, 1] for regression or binary, [n, k] class probabilities otherwise."""
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(features)
        return proba[:, 1:] if proba.shape[1] == 2 else proba
    return estimator.predict(features).reshape(features.shape[0], -1)


def _text_stack(kind: str, sparse_train: Any, target: np.ndarray, sparse_test: Any) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (train) and refitted (test) linear scores of the bag of words, for HGB."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    estimator = _classifier(kind, "linear")
    folds = (KFold(OOF_FOLDS, shuffle=True, random_state=SEED) if kind == "regression"
             else StratifiedKFold(OOF_FOLDS, shuffle=True, random_state=SEED))
    method = "predict" if kind == "regression" else "predict_proba"
    oof = cross_val_predict(estimator, sparse_train, target, cv=folds, method=method)
    oof = oof.reshape(len(target), -1)
    if oof.shape[1] == 2:
        oof = oof[:, 1:]
    estimator.fit(sparse_train, target)
    return oof, _decision(estimator, sparse_test)


def _outputs(kind: str, estimator: Any, features: Any, n_outputs: int) -> dict[str, np.ndarray]:
    if kind == "regression":
        return {"value": np.asarray(estimator.predict(features), np.float64).reshape(-1, n_outputs)}
    proba = estimator.predict_proba(features)
    classes = np.asarray(estimator.classes_)
    out = {"label": classes[proba.argmax(axis=1)].astype(np.int64)}
    if kind == "binary":
        positive = np.flatnonzero(classes == 1)
        out["score"] = proba[:, positive[0]] if len(positive) else np.zeros(len(proba))
    return out


def _columns(recipe: dict[str, Any], x: dict[str, np.ndarray]) -> tuple[int, int]:
    """(dense columns of the linear model, columns of HGB) for these inputs, from shapes alone."""
    linear = hgb = 0
    for modality, spec in recipe["encoders"].items():
        shape = np.asarray(x[modality]).shape
        width = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        kind = spec.get("kind")
        if kind == "audio":
            bins = shape[2] if len(shape) == 3 else int((spec.get("frontend") or {}).get("num_mel_bins", 32))
            linear += (AUDIO_SEGMENTS + 1) * bins
            hgb += (AUDIO_SEGMENTS + 1) * bins
        elif kind == "text":
            hgb += 1
        elif kind == "image":
            linear += width
            hgb += max(1, width // (IMAGE_POOL * IMAGE_POOL))
        else:
            linear += width
            hgb += width
    return max(linear, 1), max(hgb, 1)


def fit_row_limits(recipe: dict[str, Any], x_train: dict[str, np.ndarray], max_fit_rows: int | None = None) -> tuple[int, int]:
    """(rows the linear model fits on, rows HGB fits on) by the cost rule in this module's docstring;
    `max_fit_rows`: None for that rule, 0 for every train row, else a cap on the linear model's rows."""
    n = len(next(iter(x_train.values())))
    linear_columns, hgb_columns = _columns(recipe, x_train)
    if max_fit_rows is None:
        linear = n if n * linear_columns <= FIT_CELLS else min(n, max(MIN_FIT_ROWS, FIT_CELLS // linear_columns))
    else:
        linear = n if max_fit_rows == 0 else min(n, max_fit_rows)
    return linear, min(linear, max(HGB_MIN_ROWS, HGB_CELLS // hgb_columns))


def _fit_rows(n: int, max_fit_rows: int | None) -> np.ndarray:
    if max_fit_rows is None or n <= max_fit_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(SEED).choice(n, max_fit_rows, replace=False))


def _dense_views(dense_train: np.ndarray | None, dense_test: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Train-mean imputed, standardised copies for the linear model (constant columns stay 0)."""
    mean = np.nanmean(dense_train, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    train = np.where(np.isnan(dense_train), mean, dense_train)
    test = np.where(np.isnan(dense_test), mean, dense_test)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def task_baselines(recipe: dict[str, Any], x_train: dict, y_train: dict, x_test: dict,
                   max_fit_rows: int | None = None, threads: int = THREADS,
                   only: tuple[str, ...] = BASELINES) -> dict[str, headline.Outputs]:
    """{baseline: Outputs on the test rows} for a task model's recipe (every task, every baseline)."""
    from mtmm_keras.zoo.evaluation import present_rows
    from threadpoolctl import threadpool_limits

    for name in only:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}.")
    linear_rows, hgb_limit = fit_row_limits(recipe, x_train, max_fit_rows)
    rows = _fit_rows(len(next(iter(x_train.values()))), linear_rows)
    fit_inputs = {m: np.asarray(v)[rows] for m, v in x_train.items()}
    train = modality_features(recipe, fit_inputs)
    test = modality_features(recipe, x_test)
    dense_train, sparse_train = _split(train)
    dense_test, sparse_test = _split(test)
    if dense_train is not None:
        scaled_train, scaled_test = _dense_views(dense_train, dense_test)
        hgb_train, hgb_test = _split(hgb_features(recipe, train, fit_inputs))[0], _split(hgb_features(recipe, test, x_test))[0]
    hgb_rows = np.zeros(len(rows), bool)
    hgb_rows[_fit_rows(len(rows), hgb_limit)] = True
    result: dict[str, headline.Outputs] = {name: {} for name in only}
    with threadpool_limits(threads):
        for task in recipe["tasks"]:
            name, kind = task["name"], headline.task_kind(task)
            target = np.asarray(y_train[name])[rows]
            keep = present_rows(target, task)
            target = target[keep]
            target = target.reshape(len(target), -1) if kind == "regression" else target.reshape(-1).astype(np.int64)
            if kind == "regression" and target.shape[1] == 1:
                target = target.reshape(-1)
            n_outputs = 1 if target.ndim == 1 else target.shape[1]
            linear_train = _stack(scaled_train[keep] if dense_train is not None else None,
                                  sparse_train[keep] if sparse_train is not None else None)
            linear_test = _stack(scaled_test if dense_train is not None else None, sparse_test)
            for baseline in only:
                estimator = _classifier(kind, baseline)
                fit_target = target
                if baseline == "hgb":
                    sub = hgb_rows[keep]  # HGB's share of the fitting rows
                    parts_train = [hgb_train[keep][sub]] if dense_train is not None else []
                    parts_test = [hgb_test] if dense_train is not None else []
                    if sparse_train is not None:
                        oof, scores = _text_stack(kind, sparse_train[keep], target, sparse_test)
                        parts_train.append(oof[sub])
                        parts_test.append(scores)
                    fit_x, test_x = np.concatenate(parts_train, axis=1), np.concatenate(parts_test, axis=1)
                    fit_target = target[sub]
                elif baseline == "linear":
                    fit_x, test_x = linear_train, linear_test
                else:
                    fit_x, test_x = np.zeros((len(target), 1)), np.zeros((len(dense_test) if dense_test is not None
                                                                           else sparse_test.shape[0], 1))
                if baseline == "hgb" and kind == "regression" and n_outputs > 1:
                    from sklearn.multioutput import MultiOutputRegressor

                    estimator = MultiOutputRegressor(estimator)
                estimator.fit(fit_x, fit_target)
                result[baseline][name] = _outputs(kind, estimator, test_x, n_outputs)
    return result


def _stack(dense: np.ndarray | None, sparse: Any) -> Any:
    if sparse is None:
        return dense
    if dense is None:
        return sparse
    return _sparse().hstack([_sparse().csr_matrix(dense), sparse]).tocsr()


def retrieval_baselines(recipe: dict[str, Any], x_train: dict, groups_train: np.ndarray, x_test: dict,
                        groups_test: np.ndarray, max_fit_rows: int | None = None,
                        threads: int = THREADS) -> dict[str, headline.Outputs]:
    """{baseline: first-hit ranks per direction} for a joint-embedding recipe: class-probability embeddings
    from a per-modality logistic regression (`linear`) or HGB classifier of the group label, by cosine."""
    from threadpoolctl import threadpool_limits

    linear_rows, hgb_limit = fit_row_limits(recipe, x_train, max_fit_rows)
    rows = _fit_rows(len(groups_train), linear_rows)
    fit_inputs = {m: np.asarray(v)[rows] for m, v in x_train.items()}
    train = modality_features(recipe, fit_inputs)
    test = modality_features(recipe, x_test)
    target = np.asarray(groups_train).reshape(-1)[rows]
    result = {}
    with threadpool_limits(threads):
        for baseline, model in zip(RETRIEVAL_BASELINES, ("linear", "hgb")):
            embeddings = {}
            for modality in recipe["encoders"]:
                fit_x, test_x, fit_y = train[modality], test[modality], target
                if model == "linear" and not _sparse().issparse(fit_x):
                    fit_x, test_x = _dense_views(fit_x, test_x)
                if model == "hgb":
                    sub = _fit_rows(len(target), hgb_limit)
                    fit_x = hgb_features(recipe, {modality: fit_x}, {modality: fit_inputs[modality]})[modality][sub]
                    test_x = hgb_features(recipe, {modality: test_x}, x_test)[modality]
                    fit_y = target[sub]
                proba = _classifier("multiclass", model).fit(fit_x, fit_y).predict_proba(test_x)
                embeddings[modality] = proba / np.maximum(np.linalg.norm(proba, axis=1, keepdims=True), 1e-12)
            result[baseline] = headline.embedding_outputs(embeddings, groups_test)
    return result
