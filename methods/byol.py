"""BYOL — Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020 (arXiv:2006.07733).

Online network (backbone + projector + predictor) regresses the EMA target network's
projection of the other view; symmetric loss 2 - 2 cos. tau follows a cosine to 1 over training
from ``ema_tau``, raised for short runs to 1 - 10 / total_steps (:mod:`ssl_bench.ema`). Ablation
switches: ``predictor=False`` (the online projection is compared directly; collapses in the
paper), ``ema_tau=0`` (target = online copy each step),
``pred_lr_scale`` (the predictor's learning rate relative to the rest, the lambda of the paper's
Appendix ablation: with tau = 0 a slow predictor collapses, a fast one learns).
Defaults: projector 512 -> 128, predictor 512 -> 128, tau 0.99 (paper: 4096 -> 256, 0.996).
Views: the default crop/flip/jitter recipe with asymmetric solarisation, p = ``solarize_p1`` 0 in
view 1 and ``solarize_p2`` 0.2 in view 2 (the paper's BYOL-style augmentation; applied to [0, 1]
images before normalisation; blur is not used at 28 px).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.ema import update_targets
from ssl_bench.fidelity import OUR_EMA, PaperRecipe, WHY_EMA, WHY_LR, WHY_OPTIMIZER, WHY_VIEWS, WHY_WIDTH
from ssl_bench.heads import MLPHead, frozen_copy
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method
from ssl_bench.views import asymmetric_views


@register_method("byol")
class BYOL(Method):
    defaults = dict(
        proj_hidden_dim=512,
        proj_dim=128,
        pred_hidden_dim=512,
        predictor=True,
        ema_tau=0.99,
        ema_cosine=True,
        pred_lr_scale=1.0,
        solarize_p1=0.0,
        solarize_p2=0.2,
    )
    #: BYOL: LARS, lr 0.2 x batch/256, wd 1.5e-6 (``optimizer: paper``)
    paper_optim = dict(optimizer="lars", lr=0.2, weight_decay=1.5e-06, lr_batch=256)
    paper = PaperRecipe(
        source=(
            "Grill et al. 2020 (BYOL), ImageNet 1000-epoch recipe (batch 4096): the presets and head sizes of "
            "google-deepmind/deepmind-research byol/configs/byol.py (the stored copy's config body is altered "
            "to ResNet-18 / 10 classes; augmentations from the paper, not verified against code)"
        ),
        heads="projector 4096 -> 256 and predictor 4096 -> 256, 2-layer MLPs with BN",
        views=(
            "asymmetric: crop 0.08-1, flip, colour jitter (p 0.8), grayscale p 0.2, blur p 1.0 / 0.1, "
            "solarize p 0 / 0.2"
        ),
        ema="cosine 0.996 -> 1",
        hparams=dict(
            proj_hidden_dim=4096,
            proj_dim=256,
            pred_hidden_dim=4096,
            predictor=True,
            ema_tau=0.996,
            ema_cosine=True,
            pred_lr_scale=1.0,
            solarize_p1=0.0,
            solarize_p2=0.2,
        ),
        optim=dict(optimizer="LARS (eta 1e-3, momentum 0.9)", lr="0.2 x batch/256", weight_decay=1.5e-6),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8), solarize p 0 / 0.2", ema=OUR_EMA),
        deviations=dict(
            heads=WHY_WIDTH,
            proj_hidden_dim=WHY_WIDTH,
            proj_dim=WHY_WIDTH,
            pred_hidden_dim=WHY_WIDTH,
            views=WHY_VIEWS,
            ema=WHY_EMA + "; BYOL's own presets lower tau for shorter runs (0.99 at 100 epochs, 0.97 at 40)",
            ema_tau=WHY_EMA + "; BYOL's own presets lower tau for shorter runs (0.99 at 100 epochs, 0.97 at 40)",
            optimizer=WHY_OPTIMIZER,
            lr=WHY_LR,
            weight_decay="the harness's AdamW weight decay 1e-4 (none on 1-D parameters); 1.5e-6 belongs to LARS",
        ),
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(self.out_dim, h.proj_hidden_dim, h.proj_dim)
        self.predictor = MLPHead(h.proj_dim, h.pred_hidden_dim, h.proj_dim) if h.predictor else None
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)

    def _online(self, x: Tensor) -> Tensor:
        z = self.projector(self.backbone(x))
        return self.predictor(z) if self.predictor is not None else z

    def make_views(self, spec: DataSpec, overrides: dict | None = None) -> Callable:
        # BYOL's asymmetric recipe: solarisation only in the second view (images in [0, 1])
        return asymmetric_views(spec.kind, overrides, (self.hp.solarize_p1, self.hp.solarize_p2), spec.views)

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x1, x2 = views
        p1, p2 = self._online(x1), self._online(x2)
        with torch.no_grad():  # the target branch gets no gradient (stop-gradient)
            t1, t2 = (self.target_projector(self.target_backbone(x)) for x in (x1, x2))
        loss = (losses.byol_loss(p1, t2) + losses.byol_loss(p2, t1)) / 2
        return loss, {}

    def lr_scales(self) -> dict[str, float]:
        return {"predictor": self.hp.pred_lr_scale} if self.predictor is not None else {}

    def on_step_end(self, progress: float) -> None:
        update_targets(self, progress)  # target_backbone, target_projector; tau scaled to the run length
