"""Robustness of frozen features to corrupted inputs (the ImageNet-C idea: Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019).

A model evaluator. The k-NN bank (the ``knn`` evaluator's weighted vote, k = 20, T = 0.07) and
the linear probe (the ``linear`` evaluator's ``fast`` probe) are fitted on the embeddings of
``n_train`` clean training images (a seeded sample), then scored on the embeddings of ``n_test``
test images (a seeded sample), clean and under each corruption at each severity:

==================  ====================================================================
``noise``           additive Gaussian noise, σ = 0.08 / 0.18 / 0.38 (pixel values in [0, 1]), clipped
``blur``            Gaussian blur, σ = 0.5 / 1 / 1.5 px at 28 px (scaled with the image side)
``contrast``        each image's deviations from its mean scaled by 0.4 / 0.2 / 0.1
``rotation``        rotation by 15 / 30 / 45 degrees, the sign drawn per image
``translation``     shift by 2 / 4 / 6 px at 28 px in a direction drawn per image (zeros come in)
``elastic``         a smooth random displacement field (Gaussian-smoothed noise, σ = 4 px at
                    28 px) with an RMS displacement of 0.75 / 1.5 / 2.25 px at 28 px
==================  ====================================================================

Every random draw comes from a generator seeded by ``seed`` and the corruption, so every method
sees the same corrupted images. The corruptions act on the images in [0, 1] before the channel
normalisation. Vector data has no images: only ``noise`` applies there, with σ times each
feature's standard deviation.

Metrics (percent): ``knn_clean`` and ``linear_clean`` (the same bank and probe on the clean test
sample), ``knn_corrupt`` and ``linear_corrupt`` (the mean over corruptions and severities),
``knn_ratio`` and ``linear_ratio`` (corrupt / clean), and per corruption ``knn_<name>`` and
``linear_<name>`` (the mean over its severities).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ssl_bench.data import Data, in_memory
from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.evaluators.knn import knn_accuracy
from ssl_bench.evaluators.linear import fit_fast_probe
from ssl_bench.kinds import DataKind
from ssl_bench.method import Method
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample_indices

CORRUPTIONS = ("noise", "blur", "contrast", "rotation", "translation", "elastic")
#: Severity parameters 1..3 of each corruption (spatial ones in pixels at a 28-px side).
SEVERITY = {
    "noise": (0.08, 0.18, 0.38),
    "blur": (0.5, 1.0, 1.5),
    "contrast": (0.4, 0.2, 0.1),
    "rotation": (15.0, 30.0, 45.0),
    "translation": (2.0, 4.0, 6.0),
    "elastic": (0.75, 1.5, 2.25),
}


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


def _warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _identity_grid(x: torch.Tensor) -> torch.Tensor:
    theta = torch.eye(2, 3, dtype=x.dtype).expand(len(x), 2, 3)
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def corrupt(x: torch.Tensor, name: str, severity: int, g: torch.Generator) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) in [0, 1] under corruption ``name`` at ``severity`` (1..3)."""
    p = SEVERITY[name][severity - 1]
    n, _, h, w = x.shape
    px = p * h / 28  # spatial parameters scale with the image side
    if name == "noise":
        return (x + p * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)
    if name == "blur":
        return _blur(x, px)
    if name == "contrast":
        mean = x.mean((1, 2, 3), keepdim=True)
        return (x - mean) * p + mean
    if name == "rotation":
        sign = torch.randint(0, 2, (n,), generator=g).to(x.dtype) * 2 - 1
        a = sign * math.radians(p)
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.stack([torch.stack([cos, -sin * h / w, 0 * a], 1), torch.stack([sin * w / h, cos, 0 * a], 1)], 1)
        return _warp(x, F.affine_grid(theta, list(x.shape), align_corners=False))
    if name == "translation":
        ang = torch.rand(n, generator=g, dtype=x.dtype) * 2 * math.pi
        shift = torch.stack([torch.cos(ang) * px * 2 / w, torch.sin(ang) * px * 2 / h], 1)  # normalised coordinates
        return _warp(x, _identity_grid(x) - shift[:, None, None, :])
    if name == "elastic":
        field = torch.rand((n, 2, h, w), generator=g, dtype=x.dtype) * 2 - 1
        field = _blur(field, 4 * h / 28)
        field = field / field.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)  # RMS 1 px
        scale = torch.tensor([2 / w, 2 / h], dtype=x.dtype) * px
        return _warp(x, _identity_grid(x) + field.permute(0, 2, 3, 1) * scale)
    raise ConfigError(f"robustness: unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")


@torch.no_grad()
def _embed(
    method: Method, data: Data, x: torch.Tensor, device: torch.device, autocast: Callable, batch: int = 512
) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        with autocast():
            out.append(method.encode(data.normalize(x[i : i + batch].to(device))).float().flatten(1).cpu())
    return torch.cat(out).numpy()


def corrupted_sets(
    data: Data, x: torch.Tensor, names: Sequence[str], seed: int
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """(name, severity, corrupted copy of ``x``) for every corruption and severity, each from its
    own seeded generator. Vector data: only ``noise``, scaled by each feature's training std."""
    for ci, name in enumerate(names):
        for sev in (1, 2, 3):
            g = torch.Generator().manual_seed(seed * 1000 + ci * 10 + sev)
            if data.kind == DataKind.IMAGE:
                yield name, sev, corrupt(x, name, sev, g)
            elif name == "noise":
                std = data.to_float(in_memory(data.x_train)).std(0)
                yield name, sev, x + SEVERITY["noise"][sev - 1] * std * torch.randn(x.shape, generator=g)


@register_evaluator("robustness")
class Robustness(Evaluator):
    defaults = dict(
        corruptions=list(CORRUPTIONS), n_train=10_000, n_test=2000, k=20, temperature=0.07, linear=True, seed=0
    )
    metrics = (
        Metric(
            "knn_corrupt",
            "k-NN corrupt",
            "%",
            True,
            "k-NN top-1 on corrupted test images (noise, blur, contrast, rotation, translation, elastic; "
            "3 severities; mean), bank of clean training images (model evaluator)",
            headline=True,
        ),
        Metric(
            "knn_ratio",
            "k-NN corrupt/clean",
            "",
            True,
            "k-NN corrupt top-1 / clean top-1 (same bank, same test sample)",
        ),
        Metric(
            "linear_corrupt",
            "linear corrupt",
            "%",
            True,
            "fast linear probe (fitted on clean training images) on the corrupted test images, mean top-1",
            headline=True,
        ),
        Metric("linear_ratio", "linear corrupt/clean", "", True, "linear corrupt top-1 / clean top-1"),
        Metric("knn_clean", "k-NN clean (robustness)", "%", True, "k-NN top-1 on the clean test sample"),
        Metric("linear_clean", "linear clean (robustness)", "%", True, "linear top-1 on the clean test sample"),
        Metric("knn_*", "k-NN under a corruption", "%", True, "k-NN top-1 under one corruption", pattern=True),
        Metric("linear_*", "linear under a corruption", "%", True, "linear top-1 under one corruption", pattern=True),
    )
    order = 45
    default = False  # opt in: ~5x the embedding work of one evaluation (see docs/robustness.md)
    legend_options = ("n_train", "n_test")
    preset_options = {"smoke": dict(n_train=256, n_test=128)}
    needs_model = True

    def evaluate_model(self, method: Method, data: Data, device: torch.device) -> dict[str, float]:
        o = self.options
        names = list(o["corruptions"])
        bad = sorted(set(names) - set(CORRUPTIONS))
        if bad or not names:
            raise ConfigError(f"robustness: unknown corruption(s) {bad or '[]'}; known: {', '.join(CORRUPTIONS)}")
        if data.y_train is None or data.y_test is None:
            raise ConfigError("robustness needs labelled training and test images")
        tr = subsample_indices(len(data.x_train), o["n_train"], o["seed"])
        te = subsample_indices(len(data.x_test), o["n_test"], o["seed"] + 1)
        ytr, yte = data.y_train[tr].numpy(), data.y_test[te].numpy()
        x_train, x_all_test = in_memory(data.x_train, "robustness"), in_memory(data.x_test, "robustness")
        x_test = data.to_float(x_all_test[te])

        def embed(x: torch.Tensor) -> np.ndarray:
            return _embed(method, data, x, device, lambda: self.autocast(device))

        bank = embed(data.to_float(x_train[tr]))
        probe = fit_fast_probe(bank, ytr, seed=o["seed"])[0] if o["linear"] else None

        def scores(x: torch.Tensor) -> tuple[float, float]:
            z = embed(x)
            knn = knn_accuracy(bank, ytr, z, yte, k=o["k"], temperature=o["temperature"])["top1"]
            lin = float((probe.predict(z) == yte).mean() * 100) if probe is not None else float("nan")
            return float(knn), lin

        clean = scores(x_test)
        per: dict[str, list[tuple[float, float]]] = {}
        for name, _sev, xc in corrupted_sets(data, x_test, names, o["seed"]):
            per.setdefault(name, []).append(scores(xc))
        if not per:
            raise ConfigError(f"robustness: none of {names} applies to {data.kind} data (vector data: noise only)")
        return summarise(clean, per, o["linear"])


def summarise(clean: tuple[float, float], per: dict[str, list[tuple[float, float]]], linear: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    heads = ("knn", "linear") if linear else ("knn",)
    for h, head in enumerate(heads):
        every = [s[h] for runs in per.values() for s in runs]
        mean = float(np.mean(every))
        out[f"{head}_clean"] = clean[h]
        out[f"{head}_corrupt"] = mean
        out[f"{head}_ratio"] = mean / clean[h] if clean[h] > 0 else 0.0
        for name, runs in per.items():
            out[f"{head}_{name}"] = float(np.mean([s[h] for s in runs]))
    return out
