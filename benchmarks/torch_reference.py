"""PyTorch versions of the method spec's reference models, used as the speed peer in `train_speed`.

Each model computes the same function as the matching `mk.builders` model, layer for layer, so the
two sides do the same arithmetic per sample:

- `HardSharingMLP`: 100 → 128 (ReLU) → 64 (ReLU) → heads [1, 1, 2]; loss = Σ_t MSE_t; Adam (spec §1).
- `SoftSharingMLP`: one 128 → 64 tower per task as one batched matmul (like `mk.layers.StackedDense`),
  heads on top, loss = Σ_t MSE_t + α·Σ_t Σ_k ‖θ_t − θ_k‖² (spec §2, computed as 2T·Σ_t ‖θ_t − θ̄‖²).
- `JointEmbedding` (spec §3): text = Embedding + LSTM(64), last hidden state; image = Conv2D(3→64, 3×3)
  ReLU → 2×2 max-pool → Conv2D(64→128, 3×3) ReLU → global mean pool → Dense 64 (ReLU) — the
  `mk.encoders.image` layout, whose pool between the convolutions the spec sketch leaves out; each
  modality then gets a linear projection to 64 and L2 normalisation (what `mk.builders.joint_embedding`
  adds), similarity = cosine, loss = `torch.nn.CosineEmbeddingLoss` on ±1 labels.

`train(...)` is the plain, idiomatic PyTorch loop a user would write for in-memory data: shuffle once
per epoch, slice batches from preloaded tensors (no DataLoader workers), zero_grad / forward /
backward / step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class HardSharingMLP(nn.Module):
    def __init__(self, input_dim: int = 100, trunk_units=(128, 64), head_units=(1, 1, 2)):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for units in trunk_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, units) for units in head_units)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        shared = self.trunk(x)
        return [head(shared) for head in self.heads]


class SoftSharingMLP(nn.Module):
    """T towers stacked on a leading axis (one `torch.einsum` per level), tied by α·Ω."""

    def __init__(self, input_dim: int = 100, tower_units=(128, 64), head_units=(1, 1, 2), alpha: float = 1e-3):
        super().__init__()
        towers = len(head_units)
        self.alpha = alpha
        self.kernels = nn.ParameterList()
        self.biases = nn.ParameterList()
        width = input_dim
        for units in tower_units:
            bound = float(np.sqrt(6.0 / (width + units)))
            self.kernels.append(nn.Parameter(torch.empty(towers, width, units).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(towers, units)))
            width = units
        self.heads = nn.ModuleList(nn.Linear(width, units) for units in head_units)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = torch.relu(torch.einsum("bi,tio->bto", x, self.kernels[0]) + self.biases[0])
        for kernel, bias in zip(list(self.kernels)[1:], list(self.biases)[1:]):
            h = torch.relu(torch.einsum("bti,tio->bto", h, kernel) + bias)
        return [head(h[:, t, :]) for t, head in enumerate(self.heads)]

    def penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        for weight in [*self.kernels, *self.biases]:
            towers = weight.shape[0]
            total = total + 2.0 * towers * torch.sum((weight - weight.mean(dim=0, keepdim=True)) ** 2)
        return self.alpha * total


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_dim: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(self.embedding(tokens))
        return h_n[-1]


class ImageEncoder(nn.Module):
    def __init__(self, channels: int = 3, filters=(64, 128), output_dim: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, filters[0], 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(filters[0], filters[1], 3, padding=1)
        self.fc = nn.Linear(filters[1], output_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # image: [B, C, H, W]
        x = torch.relu(self.conv1(image))
        x = self.pool(x)
        x = torch.relu(self.conv2(x))
        return torch.relu(self.fc(x.mean(dim=(2, 3))))


class JointEmbedding(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_dim: int = 64, image_channels: int = 3,
                 filters=(64, 128), embed_dim: int = 64):
        super().__init__()
        self.text = TextEncoder(vocab_size, embedding_dim, hidden_dim)
        self.image = ImageEncoder(image_channels, filters, embed_dim)
        self.text_projection = nn.Linear(hidden_dim, embed_dim)
        self.image_projection = nn.Linear(embed_dim, embed_dim)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = nn.functional.normalize(self.text_projection(self.text(tokens)), dim=-1)
        v = nn.functional.normalize(self.image_projection(self.image(image)), dim=-1)
        return t, v


def build(case: str, device: str = "cpu", **sizes: Any) -> tuple[nn.Module, Any]:
    """The model for `case` ("hard_sharing", "soft_sharing", "joint_embedding") and its loss function."""
    if case == "hard_sharing":
        model = HardSharingMLP(sizes.get("input_dim", 100))
        mse = nn.MSELoss()

        def loss_fn(outputs, targets):
            return sum(mse(o, t) for o, t in zip(outputs, targets))
    elif case == "soft_sharing":
        model = SoftSharingMLP(sizes.get("input_dim", 100), alpha=sizes.get("alpha", 1e-3))
        mse = nn.MSELoss()

        def loss_fn(outputs, targets):
            return sum(mse(o, t) for o, t in zip(outputs, targets)) + model.penalty()
    elif case == "joint_embedding":
        model = JointEmbedding(sizes["vocab_size"], sizes.get("embedding_dim", 64), 64, sizes.get("channels", 3))
        cel = nn.CosineEmbeddingLoss(margin=0.0)

        def loss_fn(outputs, targets):
            return cel(outputs[0], outputs[1], targets[0])
    else:
        raise ValueError(f"unknown case {case!r}")
    return model.to(device), loss_fn


def to_tensors(case: str, x: Any, y: Any, device: str = "cpu") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """numpy data (the same arrays the Keras side gets) → lists of input and target tensors on `device`."""
    if case == "joint_embedding":
        inputs = [torch.from_numpy(x["text"]).long(), torch.from_numpy(np.ascontiguousarray(x["image"].transpose(0, 3, 1, 2)))]
        targets = [torch.from_numpy(y)]
    else:
        inputs = [torch.from_numpy(x)]
        targets = [torch.from_numpy(y[name]) for name in sorted(y)]
    return [t.to(device) for t in inputs], [t.to(device) for t in targets]


def train(model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, inputs: list[torch.Tensor],
          targets: list[torch.Tensor], batch_size: int, epochs: int = 1) -> float:
    """Plain training loop; returns the last batch's loss."""
    model.train()
    n = inputs[0].shape[0]
    device = inputs[0].device
    loss = torch.zeros(())
    for _ in range(epochs):
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(*[t[idx] for t in inputs]), [t[idx] for t in targets])
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return float(loss.detach())
