"""GradNorm against the paper itself (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, Algorithm 1), not
against the library's own NumPy twin (`gradnorm_step`, which tests/test_weighting_fit.py uses).

A two-task network in PyTorch: a shared layer W, one head per task. Per the paper, at each step t
  G_i(t) = ‖∇_W w_i(t) L_i(t)‖₂,  Ḡ(t) = mean_i G_i(t),
  L̃_i(t) = L_i(t) / L_i(0),  r_i(t) = L̃_i(t) / mean_j L̃_j(t),
  L_grad = Σ_i |G_i(t) − Ḡ(t) · r_i(t)^α|₁, with the targets Ḡ(t) · r_i(t)^α held constant,
  w_i ← w_i − λ ∂L_grad/∂w_i  (plain gradient descent here, as the library does), then
  renormalised so that Σ_i w_i = T.
torch's autograd differentiates L_grad through G_i(w) (create_graph); nothing is taken from mtmm_keras.
The library gets only what a train step hands it: the Gramian of the per-task gradients over W, and
the task losses.
"""

from __future__ import annotations

import numpy as np
import pytest

import mtmm_keras as mk

ALPHA, LR = 1.5, 0.1


def _network(torch):
    torch.manual_seed(0)
    shared = torch.nn.Linear(5, 4)
    heads = [torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)]
    return shared, heads


def _task_losses(torch, shared, heads, batch):
    x, targets = batch
    h = torch.tanh(shared(x))
    return [torch.mean((head(h)[:, 0] - y) ** 2) for head, y in zip(heads, targets)]


def _batch(torch, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g)
    return x, [scale[0] * torch.randn(16, generator=g), scale[1] * torch.randn(16, generator=g)]


def _paper_step(torch, w, losses, initial, shared_params, alpha=ALPHA):
    """Algorithm 1, one update of the loss weights w (a float64 tensor [2])."""
    w = w.clone().requires_grad_(True)
    norms = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(w[i] * loss, shared_params, retain_graph=True, create_graph=True)
        norms.append(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    G = torch.stack(norms)
    ratios = torch.tensor([float(l.detach()) for l in losses], dtype=torch.float64) / initial
    r = ratios / ratios.mean()
    target = (G.mean() * r ** alpha).detach()  # held constant
    l_grad = torch.abs(G - target).sum()
    (grad_w,) = torch.autograd.grad(l_grad, w)
    new = (w - LR * grad_w).detach()
    return len(new) * new / new.sum()


def _gramian(torch, losses, shared_params):
    """G = J Jᵀ over the shared parameters, J's rows the per-task gradients (what the train step computes)."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, shared_params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    jacobian = torch.stack(rows)
    return (jacobian @ jacobian.T).numpy()


STEPS = 12


def _scales(t):
    """Target scales per step: task 1's targets shrink fast (its loss ratio falls), task 0's stay, so the
    loss ratios r_i drift apart step by step and the targets Ḡ·r_i^α move across the scaled norms."""
    return (2.0, 3.0 * 0.8 ** t)


def test_two_task_steps_match_the_papers_algorithm():
    torch = pytest.importorskip("torch")
    shared, heads = _network(torch)
    shared_params = list(shared.parameters())
    method = mk.weighting.get("gradnorm", alpha=ALPHA, learning_rate=LR)
    method.build_for_tasks(2)

    w = w_alpha0 = torch.ones(2, dtype=torch.float64)
    initial = None
    history, differs_without_alpha = [], False
    for t in range(STEPS):
        losses = _task_losses(torch, shared, heads, _batch(torch, t, _scales(t)))
        values = torch.tensor([float(l.detach()) for l in losses], dtype=torch.float64)
        if initial is None:
            initial = values  # L_i(0)
        gramian = _gramian(torch, losses, shared_params)
        used = method.aggregate(gramian.astype("float32"), values.numpy().astype("float32"))
        # the network's step t uses w(t), the weights before this step's update
        np.testing.assert_allclose(np.asarray(used), w.numpy(), rtol=1e-5, err_msg=f"step {t}")
        w_next = _paper_step(torch, w, losses, initial, shared_params)
        np.testing.assert_allclose(np.asarray(method.loss_weights), w_next.numpy(), rtol=1e-5, err_msg=f"step {t}")
        # the same step with α = 0 (no loss-ratio term): where it differs, this scenario tests α itself
        differs_without_alpha |= not np.allclose(_paper_step(torch, w, losses, initial, shared_params, 0.0), w_next)
        w = w_next
        history.append(w.numpy().copy())

    assert differs_without_alpha  # the loss ratios changed at least one update: α and L_i(0) are exercised
    assert np.allclose([h.sum() for h in history], 2.0)
    # what the paper predicts: task 1's loss falls faster (smaller ratio r_1), so its weight ends lower
    assert history[-1][1] < 1.0 < history[-1][0]
