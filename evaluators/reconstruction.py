"""Reconstruction fine-tune — phase 2 of the JEA tutorial: how much of the input does the
representation keep? A decoder maps the encoder's representation of a PERTURBED input back to
the CLEAN input, first with the encoder frozen, then with encoder and decoder fine-tuned together.

A model evaluator (it needs the encoder and the images; skipped for the ``pixels`` baseline).
The judged method is never modified: the evaluator works on a deep copy.

* Data: ``n_train`` training samples (seeded) to fit, ``n_test`` test samples to score, as
  floats in [0, 1] for images (``data.to_float``); the encoder sees ``data.normalize(x̃)``.
* Perturbation x̃: Gaussian noise of std ``noise_std`` on every sample, then (images) a random
  ``mask_ratio`` of the 4x4 patches zeroed (:mod:`ssl_bench.views`), seeded.
* Decoder: MLP representation -> ``hidden`` (GELU) -> input size; a sigmoid for images.
* Phase ``frozen``: ``epochs_frozen`` epochs of Adam (lr ``lr``) on the decoder only; the encoder
  copy is in eval mode with ``requires_grad`` off, so its weights stay exactly as trained.
* Phase ``finetune``: starting from the frozen-phase decoder, ``epochs_finetune`` epochs of Adam
  on encoder + decoder (encoder lr ``finetune_lr``, decoder lr ``lr``; encoder in train mode).

Metrics per phase: ``mse_<phase>`` = mean squared error per input element on the test samples
(pixel scale [0, 1] for images) and ``psnr_<phase>`` = 10 · log10(peak² / mse) in dB, peak = 1 for
images and the value range (max - min) of the clean test data for vectors.

Artifact (images, when the harness gives an artifact directory): ``<prefix>reconstruction.png``,
a grid of ``grid`` test images: originals (top row), perturbed inputs, frozen-phase and
fine-tuned reconstructions (bottom row).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample_indices
from ssl_bench.stats import small_work_threads
from ssl_bench.views import gaussian_noise, patch_mask

if TYPE_CHECKING:
    from ssl_bench.data import Data
    from ssl_bench.method import Method


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(peak² / mse) (inf when mse is 0)."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def perturb(x: torch.Tensor, g: torch.Generator, noise_std: float, mask_ratio: float, image: bool) -> torch.Tensor:
    x = gaussian_noise(x, g, noise_std) if noise_std > 0 else x
    if image:
        x = x.clamp(0, 1)
        if mask_ratio > 0:
            x = patch_mask(x, g, mask_ratio, 4)
    return x


class Decoder(nn.Module):
    def __init__(self, in_dim: int, out_shape: tuple[int, ...], hidden: int, image: bool) -> None:
        super().__init__()
        self.out_shape, self.image = tuple(out_shape), image
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, math.prod(out_shape)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(z.flatten(1)).view(-1, *self.out_shape)
        return torch.sigmoid(y) if self.image else y


def _batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def train_phase(
    model: Method,
    decoder: Decoder,
    x: torch.Tensor,
    x_noisy: torch.Tensor,
    data: Data,
    epochs: int,
    batch_size: int,
    lr: float,
    finetune: bool,
    finetune_lr: float,
    seed: int,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """Fit the decoder (and the encoder when ``finetune``) on (perturbed -> clean) pairs;
    ``autocast()`` gives the context of each forward (a fresh one per step)."""
    model.train(finetune)
    for p in model.parameters():
        p.requires_grad_(finetune)
    groups = [{"params": decoder.parameters(), "lr": lr}]
    if finetune:
        groups.append({"params": [p for p in model.parameters()], "lr": finetune_lr})
    opt = torch.optim.Adam(groups)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in _batches(len(x), batch_size, g):
            if len(idx) < 2 and finetune:
                continue  # batch norm needs two samples in train mode
            with autocast():
                rec = decoder(model.encode(data.normalize(x_noisy[idx])))
            loss = F.mse_loss(rec.float(), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def reconstruct(
    model: Method,
    decoder: Decoder,
    x_noisy: torch.Tensor,
    data: Data,
    batch_size: int = 512,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(x_noisy), batch_size):
        with autocast():
            out.append(decoder(model.encode(data.normalize(x_noisy[i : i + batch_size]))).float())
    return torch.cat(out)


@register_evaluator("reconstruction")
class Reconstruction(Evaluator):
    defaults = dict(
        n_train=4000,
        n_test=1000,
        epochs_frozen=1,
        epochs_finetune=1,
        batch_size=128,
        lr=1e-3,
        finetune_lr=1e-4,
        noise_std=0.3,
        mask_ratio=0.25,
        hidden=512,
        grid=8,
        seed=0,
    )
    metrics = (
        Metric(
            "psnr_finetune",
            "recon PSNR",
            "dB",
            True,
            "denoising reconstruction PSNR after fine-tuning the encoder with the decoder (model evaluator)",
            headline=True,
        ),
        Metric("psnr_frozen", "recon PSNR frozen", "dB", True, "denoising reconstruction PSNR, frozen encoder"),
        Metric("mse_finetune", "recon MSE", "", False, "reconstruction MSE after fine-tuning"),
        Metric("mse_frozen", "recon MSE frozen", "", False, "reconstruction MSE, frozen encoder"),
    )
    order = 80
    legend_options = ("n_train", "epochs_frozen", "epochs_finetune")
    preset_options = {
        "smoke": dict(n_train=512, n_test=256, hidden=128, batch_size=64),
        "full": dict(n_train=20_000, n_test=5000, epochs_frozen=5, epochs_finetune=5),
    }
    needs_labels = False
    needs_model = True

    def evaluate_model(self, method: Method, data: Data, device: torch.device) -> dict[str, float]:
        o = self.options
        image = data.kind == DataKind.IMAGE
        g = torch.Generator().manual_seed(o["seed"])
        itr = subsample_indices(len(data.x_train), o["n_train"], g)
        ite = subsample_indices(len(data.x_test), o["n_test"], g)
        xtr = data.to_float(data.x_train[itr]).float()
        xte = data.to_float(data.x_test[ite]).float()
        gp = torch.Generator().manual_seed(o["seed"] + 1)
        xtr_n = perturb(xtr, gp, o["noise_std"], o["mask_ratio"], image).to(device)
        xte_n = perturb(xte, gp, o["noise_std"], o["mask_ratio"], image).to(device)
        xtr, xte = xtr.to(device), xte.to(device)
        peak = 1.0 if image else float(xte.max() - xte.min()) or 1.0

        torch.manual_seed(o["seed"])
        model = copy.deepcopy(method).to(device).eval()
        with torch.no_grad():
            dim = model.encode(data.normalize(xtr_n[:2])).flatten(1).shape[1]
        decoder = Decoder(dim, tuple(xtr.shape[1:]), o["hidden"], image).to(device)
        out: dict[str, float] = {}
        recs: dict[str, torch.Tensor] = {}
        with small_work_threads(o["batch_size"] * xtr[0].numel() * 64 if device.type == "cpu" else float("inf")):
            self._phases(
                model, decoder, xtr, xtr_n, xte, xte_n, data, o, peak, out, recs, lambda: self.autocast(device)
            )
        path = self.artifact_path("reconstruction.png") if image and o["grid"] > 0 else None
        if path is not None:
            from torchvision.utils import save_image

            k = min(o["grid"], len(xte))
            rows = torch.cat([xte[:k].cpu(), xte_n[:k].cpu(), recs["frozen"][:k], recs["finetune"][:k]])
            save_image(rows.clamp(0, 1), path, nrow=k, padding=1)
            self.artifacts["grid"] = path
        return out

    @staticmethod
    def _phases(
        model: Method,
        decoder: Decoder,
        xtr: torch.Tensor,
        xtr_n: torch.Tensor,
        xte: torch.Tensor,
        xte_n: torch.Tensor,
        data: Data,
        o: dict[str, Any],
        peak: float,
        out: dict[str, float],
        recs: dict[str, torch.Tensor],
        autocast: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        phases = (("frozen", o["epochs_frozen"], False), ("finetune", o["epochs_finetune"], True))
        for phase, epochs, finetune in phases:
            train_phase(
                model,
                decoder,
                xtr,
                xtr_n,
                data,
                epochs,
                o["batch_size"],
                o["lr"],
                finetune,
                o["finetune_lr"],
                o["seed"] + 2,
                autocast,
            )
            with torch.no_grad():
                rec = reconstruct(model, decoder, xte_n, data, autocast=autocast)
            mse = float(F.mse_loss(rec, xte))
            out[f"mse_{phase}"], out[f"psnr_{phase}"] = mse, psnr(mse, peak)
            recs[phase] = rec[: o["grid"]].cpu()
