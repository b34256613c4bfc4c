"""Shared numerics of the gradient-level methods: Gramian normalisation, small exact QP solvers, wᵀJ.

Everything here is written with `keras.ops` only and fixed iteration counts, so it runs inside a
compiled train step (tf.function, jax.jit). The QP solvers replace the generic solvers TorchJD calls
(quadprog, cvxpy): with T ≤ `MAX_EXACT_TASKS` tasks they enumerate every active set, solve each
candidate's KKT system with one batched linear solve and keep the candidate that violates the KKT
conditions least, which is the exact optimum up to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

# Exact active-set enumeration costs 2**T small solves; above this many tasks an iterative solver runs.
MAX_EXACT_TASKS = 12
# Fixed sweep / step counts of the iterative fallbacks (T > MAX_EXACT_TASKS).
_FALLBACK_ITERATIONS = 2000
# Relative ridge of the candidate solves (removed again by iterative refinement, see `_refined_solve`).
_RIDGE = 1e-6


def combine_rows(weights: Any, jacobian: Any) -> Any:
    """wᵀJ: the combined gradient `[P]` from weights `[T]` and per-task gradients (rows of J) `[T, P]`."""
    weights = ops.convert_to_tensor(weights)
    jacobian = ops.convert_to_tensor(jacobian)
    return ops.squeeze(ops.matmul(ops.expand_dims(ops.cast(weights, jacobian.dtype), 0), jacobian), 0)


def gramian_of(jacobian: Any) -> Any:
    """G = J Jᵀ `[T, T]` of per-task gradients `[T, P]`."""
    jacobian = ops.convert_to_tensor(jacobian)
    return ops.matmul(jacobian, ops.transpose(jacobian))


def num_tasks_of(gramian: Any) -> int:
    """The static task count T of a `[T, T]` Gramian; a TypeError/ValueError names `gramian` otherwise."""
    shape = tuple(gramian.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"`gramian` must be a square [T, T] matrix, got shape {shape}.")
    if shape[0] is None:
        raise ValueError("`gramian` needs a static number of tasks T (its shape is [None, None]).")
    return int(shape[0])


def normalize(gramian: Any, eps: float) -> Any:
    """G / trace(G) (the Gramian of J / ‖J‖_F), or zeros when trace(G) < eps (TorchJD's `normalize`)."""
    trace = ops.sum(ops.diagonal(gramian))
    safe = ops.where(trace < eps, ops.ones_like(trace), trace)
    return ops.where(trace < eps, ops.zeros_like(gramian), gramian / safe)


def regularize(gramian: Any, eps: float) -> Any:
    """G + eps·I: makes a Gramian with rounding-negative eigenvalues positive definite (TorchJD's `regularize`)."""
    return gramian + eps * ops.eye(num_tasks_of(gramian), dtype=gramian.dtype)


def pinv_psd(gramian: Any, rtol: float | None = None) -> Any:
    """Moore-Penrose pseudo-inverse of a symmetric matrix, through its eigendecomposition.

    Eigenvalues with |λ| ≤ rtol·max|λ| are dropped; the default rtol = T·ε(dtype) is
    `torch.linalg.pinv`'s, so the result matches TorchJD's IMTL-G.
    """
    t = num_tasks_of(gramian)
    if rtol is None:
        rtol = t * float(np.finfo(keras.backend.standardize_dtype(gramian.dtype)).eps)
    sym = 0.5 * (gramian + ops.transpose(gramian))
    eigenvalues, eigenvectors = ops.linalg.eigh(sym)
    magnitude = ops.abs(eigenvalues)
    keep = magnitude > rtol * ops.max(magnitude)
    inverse = ops.where(keep, 1.0 / ops.where(keep, eigenvalues, ops.ones_like(eigenvalues)), 0.0)
    return ops.matmul(eigenvectors * ops.expand_dims(inverse, 0), ops.transpose(eigenvectors))


def _subset_masks(num_tasks: int, include_empty: bool) -> np.ndarray:
    """Every subset of range(T) as a 0/1 row (1 = free / in the support); a constant at trace time."""
    codes = np.arange(0 if include_empty else 1, 2**num_tasks)
    return ((codes[:, None] >> np.arange(num_tasks)[None, :]) & 1).astype("float32")


def _refined_solve(system: Any, rhs: Any, ridge: Any, refinements: int = 3) -> Any:
    """Solve `system` x = `rhs` (batched) through `system + ridge`, then refine against `system`.

    The ridge keeps every factorisation non-singular (TensorFlow's solve raises on an exactly singular
    matrix, e.g. two identical tasks); each refinement step shrinks the ridge's bias by about
    ridge/λ, so well-posed candidates come out exact to float32 rounding.
    """
    shifted = system + ridge
    x = ops.linalg.solve(shifted, rhs)
    for _ in range(refinements):
        x = x + ops.linalg.solve(shifted, rhs - ops.matmul(system, x))
    return x


def _pick(scores: Any, candidates: Any) -> Any:
    """The candidate (axis 0) with the smallest score, per column; non-finite candidates never win."""
    finite = ops.all(ops.isfinite(candidates), axis=1)  # [S, R]
    scores = ops.where(ops.logical_and(finite, ops.isfinite(scores)), scores, float("inf"))
    best = ops.argmin(scores, axis=0)  # [R]
    onehot = ops.transpose(ops.one_hot(best, ops.shape(scores)[0], dtype=candidates.dtype))  # [S, R]
    clean = ops.where(ops.isfinite(candidates), candidates, 0.0)
    return ops.sum(clean * ops.expand_dims(onehot, 1), axis=0)  # [T, R]


def box_qp(gramian: Any, lower: Any) -> Any:
    """Solve min_v vᵀGv s.t. v ≥ u for every row u of `lower` `[R, T]`; returns the minimisers `[R, T]`.

    This is the dual of projecting Jᵀu onto the dual cone of J's rows (Jacobian Descent, Prop. 1,
    arXiv:2406.16232). G must be positive definite (regularised). Exact by active-set enumeration for
    T ≤ MAX_EXACT_TASKS, projected coordinate descent beyond.
    """
    t = num_tasks_of(gramian)
    lower = ops.cast(ops.convert_to_tensor(lower), gramian.dtype)
    if t > MAX_EXACT_TASKS:
        return _box_qp_coordinate_descent(gramian, lower)
    free = ops.convert_to_tensor(_subset_masks(t, include_empty=True), dtype=gramian.dtype)  # [S, T]
    fixed = 1.0 - free
    eye = ops.eye(t, dtype=gramian.dtype)
    g = ops.expand_dims(gramian, 0)
    # Free rows: Σ_{j free} G_ij v_j = -Σ_{j fixed} G_ij u_j ; fixed rows: v_i = u_i.
    system = ops.expand_dims(free, 2) * g * ops.expand_dims(free, 1) + ops.expand_dims(fixed, 2) * eye
    coupling = -ops.expand_dims(free, 2) * g * ops.expand_dims(fixed, 1) + ops.expand_dims(fixed, 2) * eye
    rhs = ops.matmul(coupling, ops.expand_dims(ops.transpose(lower), 0))  # [S, T, R]
    scale = ops.maximum(ops.max(ops.abs(ops.diagonal(gramian))), 1e-30)
    ridge = _RIDGE * scale * ops.expand_dims(free, 2) * eye
    v = _refined_solve(system, rhs, ridge)  # [S, T, R]
    grad = ops.matmul(g, v)  # ∝ the multipliers of the constraints
    u = ops.expand_dims(ops.transpose(lower), 0)
    mf, mx = ops.expand_dims(free, 2), ops.expand_dims(fixed, 2)
    violation = ops.maximum(
        ops.max(ops.relu(u - v) * mf, axis=1),  # primal feasibility of the free coordinates
        ops.maximum(ops.max(ops.abs(grad) * mf, axis=1), ops.max(ops.relu(-grad) * mx, axis=1)),
    )  # [S, R]
    return ops.transpose(_pick(violation, v))


def _box_qp_coordinate_descent(gramian: Any, lower: Any) -> Any:
    """Projected Gauss-Seidel for min vᵀGv, v ≥ u: a fixed number of sweeps (T > MAX_EXACT_TASKS)."""
    t = num_tasks_of(gramian)
    diagonal = ops.diagonal(gramian)

    def sweep(_: Any, v: Any) -> Any:
        for i in range(t):
            step = ops.matmul(v, gramian[:, i]) / diagonal[i]
            coordinate = ops.maximum(lower[:, i : i + 1], v[:, i : i + 1] - step[:, None])
            v = ops.concatenate([v[:, :i], coordinate, v[:, i + 1 :]], axis=1)
        return v

    return ops.fori_loop(0, _FALLBACK_ITERATIONS // max(t, 1), sweep, ops.maximum(lower, 0.0))


def simplex_qp(gramian: Any, shift: Any) -> Any:
    """Solve min_w (w + a)ᵀG(w + a) over the probability simplex, a = `shift` `[T]`; returns w `[T]`.

    With a = 0 this is the min-norm point of the convex hull of J's rows (MGDA's problem, Désidéri 2012);
    CAGrad's subproblem is the shifted form. G may be singular: each support's KKT system gets a tiny
    ridge so that no solve fails, and the candidate chosen is the one that satisfies the true
    (unridged) KKT conditions best.
    """
    t = num_tasks_of(gramian)
    shift = ops.cast(ops.convert_to_tensor(shift), gramian.dtype)
    if t > MAX_EXACT_TASKS:
        return _simplex_qp_projected_gradient(gramian, shift)
    free = ops.convert_to_tensor(_subset_masks(t, include_empty=False), dtype=gramian.dtype)  # [S, T]
    s = free.shape[0]
    fixed = 1.0 - free
    eye = ops.eye(t, dtype=gramian.dtype)
    g = ops.expand_dims(gramian, 0)
    scale = ops.maximum(ops.max(ops.abs(ops.diagonal(gramian))), 1e-30)
    block = ops.expand_dims(free, 2) * g * ops.expand_dims(free, 1) + ops.expand_dims(fixed, 2) * eye
    # Unknowns [w; μ]: free rows (G(w + a))_i - μ = 0, fixed rows w_i = 0, last row Σ w = 1.
    top = ops.concatenate([block, -ops.expand_dims(free, 2)], axis=2)  # [S, T, T+1]
    bottom = ops.concatenate([ops.expand_dims(free, 1), ops.zeros((s, 1, 1), dtype=gramian.dtype)], axis=2)
    system = ops.concatenate([top, bottom], axis=1)  # [S, T+1, T+1]
    ga = ops.matmul(gramian, ops.expand_dims(shift, 1))[:, 0]  # [T]
    rhs = ops.concatenate([-free * ga, ops.ones((s, 1), dtype=gramian.dtype)], axis=1)
    ridge_diagonal = ops.concatenate([free, ops.zeros((s, 1), dtype=gramian.dtype)], axis=1)
    ridge = _RIDGE * scale * ops.expand_dims(ridge_diagonal, 2) * ops.eye(t + 1, dtype=gramian.dtype)
    x = _refined_solve(system, ops.expand_dims(rhs, 2), ridge)[:, :, 0]  # [S, T+1]
    w, mu = x[:, :t] * free, x[:, t:]
    grad = ops.matmul(w + shift, gramian)  # [S, T] (G symmetric)
    violation = ops.maximum(
        ops.maximum(ops.max(ops.relu(-w), axis=1), ops.abs(ops.sum(w, axis=1) - 1.0)),
        ops.maximum(ops.max(ops.abs(grad - mu) * free, axis=1), ops.max(ops.relu(mu - grad) * fixed, axis=1)),
    )  # [S]
    return _pick(ops.expand_dims(violation, 1), ops.expand_dims(w, 2))[:, 0]


def project_onto_simplex(y: Any) -> Any:
    """Euclidean projection of `y` `[T]` onto the probability simplex (sort-based, Duchi et al. 2008)."""
    t = y.shape[-1]
    ordered = ops.flip(ops.sort(y), axis=-1)
    cumulative = ops.cumsum(ordered)
    ranks = ops.arange(1, t + 1, dtype=y.dtype)
    condition = ordered - (cumulative - 1.0) / ranks > 0
    rho = ops.sum(ops.cast(condition, "int32")) - 1
    theta = (ops.take(cumulative, rho) - 1.0) / ops.cast(rho + 1, y.dtype)
    return ops.relu(y - theta)


def _simplex_qp_projected_gradient(gramian: Any, shift: Any) -> Any:
    """Projected gradient with step 1/‖G‖ for T > MAX_EXACT_TASKS (a fixed number of steps)."""
    t = num_tasks_of(gramian)
    lipschitz = ops.maximum(ops.sum(ops.abs(gramian)), 1e-30)

    def step(_: Any, w: Any) -> Any:
        return project_onto_simplex(w - ops.matmul(gramian, w + shift) / lipschitz)

    return ops.fori_loop(0, _FALLBACK_ITERATIONS, step, ops.ones((t,), dtype=gramian.dtype) / t)


def linear_plus_norm_simplex(gramian: Any, linear: Any, radius: Any, norm_eps: float) -> Any:
    """Solve min_w bᵀw + r·√(wᵀGw) over the probability simplex (b = `linear` `[T]`, r = `radius` > 0).

    CAGrad's dual problem, in closed form per support S (T ≤ MAX_EXACT_TASKS): where √(wᵀGw) > 0 the
    KKT conditions are b_S + λ(Gw)_S = μ1 with λ = r/√(wᵀGw). With v = λw this is linear,
    [G_SS -1; 1ᵀ 0][v; μ] = [-b_S; λ], so v = v₀ + λv₁ from one batched solve with two right-hand
    sides, and vᵀGv = r² fixes λ (a quadratic; v₀ᵀGv₁ = 0 and v₁ᵀGv₁ = μ₁, the squared min-norm of
    S's affine hull). The candidate that satisfies the KKT conditions best is the optimum. Where no
    such point exists the optimum has g_w = 0 (0 in the hull, objective 0): the min-norm point of the
    hull (v₁ of its support) is returned then, when its norm is below `norm_eps` and no candidate has
    a negative objective. Returns w `[T]` (on the simplex). Needs T ≤ MAX_EXACT_TASKS.
    """
    t = num_tasks_of(gramian)
    if t > MAX_EXACT_TASKS:
        raise ValueError(f"exact solve for at most {MAX_EXACT_TASKS} tasks, got {t}.")
    dtype = gramian.dtype
    linear = ops.cast(ops.convert_to_tensor(linear), dtype)
    radius = ops.cast(ops.convert_to_tensor(radius), dtype)
    free = ops.convert_to_tensor(_subset_masks(t, include_empty=False), dtype=dtype)  # [S, T]
    s = free.shape[0]
    fixed = 1.0 - free
    eye = ops.eye(t, dtype=dtype)
    g = ops.expand_dims(gramian, 0)
    scale = ops.maximum(ops.max(ops.abs(ops.diagonal(gramian))), 1e-30)
    block = ops.expand_dims(free, 2) * g * ops.expand_dims(free, 1) + ops.expand_dims(fixed, 2) * eye
    top = ops.concatenate([block, -ops.expand_dims(free, 2)], axis=2)  # [S, T, T+1]
    bottom = ops.concatenate([ops.expand_dims(free, 1), ops.zeros((s, 1, 1), dtype=dtype)], axis=2)
    system = ops.concatenate([top, bottom], axis=1)  # [S, T+1, T+1]
    zeros, ones = ops.zeros((s, 1), dtype=dtype), ops.ones((s, 1), dtype=dtype)
    rhs = ops.stack(
        [ops.concatenate([-free * linear, zeros], axis=1), ops.concatenate([0.0 * free, ones], axis=1)], axis=2
    )  # [S, T+1, 2]
    ridge_diagonal = ops.concatenate([free, zeros], axis=1)
    ridge = _RIDGE * scale * ops.expand_dims(ridge_diagonal, 2) * ops.eye(t + 1, dtype=dtype)
    x = _refined_solve(system, rhs, ridge)  # [S, T+1, 2]
    v0, v1 = x[:, :t, 0] * free, x[:, :t, 1] * free
    mu0, mu1 = x[:, t, 0], x[:, t, 1]
    gv0, gv1 = ops.matmul(v0, gramian), ops.matmul(v1, gramian)  # [S, T] (G symmetric)
    a = ops.sum(v1 * gv1, axis=1)
    half_b = ops.sum(v0 * gv1, axis=1)
    c = ops.sum(v0 * gv0, axis=1) - radius * radius
    discriminant = half_b * half_b - a * c
    valid = ops.logical_and(a > 1e-12 * scale, discriminant >= 0.0)
    lam = (ops.sqrt(ops.maximum(discriminant, 0.0)) - half_b) / ops.where(valid, a, ops.ones_like(a))
    valid = ops.logical_and(valid, lam > 0.0)
    lam = ops.where(valid, lam, float("nan"))  # non-finite candidates are never picked
    lam_col = ops.expand_dims(lam, 1)
    w = v0 / lam_col + v1  # [S, T]
    mu = ops.expand_dims(mu0 / lam + mu1, 1)
    grad = linear / lam_col + gv0 / lam_col + gv1  # (b + λGw)/λ
    violation = ops.maximum(
        ops.maximum(ops.max(ops.relu(-w), axis=1), ops.abs(ops.sum(w, axis=1) - 1.0)),
        ops.maximum(ops.max(ops.abs(grad - mu) * free, axis=1), ops.max(ops.relu(mu - grad) * fixed, axis=1)),
    )  # [S]
    smooth = _pick(ops.expand_dims(violation, 1), ops.expand_dims(w, 2))[:, 0]
    smooth_norm = ops.sqrt(ops.maximum(ops.sum(smooth * ops.matmul(gramian, smooth)), 0.0))
    smooth_value = ops.sum(linear * smooth) + radius * smooth_norm
    found = smooth_value < -1e-7 * scale  # (all zeros, value 0, when no candidate is valid)
    # The min-norm point of the hull: v₁ of the support that satisfies its KKT conditions best.
    mu1_col = ops.expand_dims(mu1, 1)
    hull_violation = ops.maximum(
        ops.maximum(ops.max(ops.relu(-v1), axis=1), ops.abs(ops.sum(v1, axis=1) - 1.0)),
        ops.maximum(ops.max(ops.abs(gv1 - mu1_col) * free, axis=1), ops.max(ops.relu(mu1_col - gv1) * fixed, axis=1)),
    )
    hull = _pick(ops.expand_dims(hull_violation, 1), ops.expand_dims(v1, 2))[:, 0]
    hull_norm = ops.sqrt(ops.maximum(ops.sum(hull * ops.matmul(gramian, hull)), 0.0))
    use_hull = ops.logical_and(hull_norm < norm_eps, ops.logical_not(found))
    return ops.where(use_hull, hull, smooth)
