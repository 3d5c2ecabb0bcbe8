"""EMA JEPA — the BYOL-style JEPA of the JEA tutorial (Grill et al., "Bootstrap Your Own Latent",
NeurIPS 2020, arXiv:2006.07733; LeCun, "A Path Towards Autonomous Machine Intelligence", 2022).

An online encoder and a predictor regress, in representation space (no projector), the
embedding of the other view by a target encoder that is the online encoder's EMA; the target is
layer-normalised (as in I-JEPA) so that shrinking every embedding cannot lower the loss. Loss:
mean squared error, symmetrised. Ablation switches: ``predictor=False``, ``ema_tau=0`` (target =
a copy of the online encoder each step, i.e. a plain stop-gradient), ``target_norm=False``.
Defaults: predictor 2-layer MLP with 512 hidden units, tau 0.99 -> 1 cosine (raised for short runs
to 1 - 10 / total_steps, :mod:`ssl_bench.ema`).
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench.ema import update_targets
from ssl_bench.fidelity import OUR_EMA, PaperRecipe, WHY_TUTORIAL
from ssl_bench.heads import MLPHead, backbone_dim, frozen_copy
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method


@register_method("ema-jepa")
class EMAJEPA(Method):
    defaults = dict(pred_hidden_dim=512, predictor=True, ema_tau=0.99, ema_cosine=True, target_norm=True)
    paper = PaperRecipe(
        source=(
            "The JEA tutorial's EMA JEPA (BYOL-style target, Grill et al. 2020; LeCun 2022): predictor + EMA "
            "target in representation space; the tutorial fixes no image recipe"
        ),
        heads="predictor MLP on the encoder's embedding (width not specified); no projector",
        views="two augmented views (augmentations not specified)",
        ema="EMA target (schedule not specified; BYOL uses cosine 0.996 -> 1)",
        optim=dict(optimizer="not specified", lr="not specified", weight_decay="not specified"),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8)", ema=OUR_EMA),
        deviations=dict(
            heads="predictor 2-layer MLP with 512 hidden units (not specified by the tutorial)",
            views=WHY_TUTORIAL,
            ema="ssl-bench's EMA schedule (not specified by the tutorial)",
            optimizer=WHY_TUTORIAL,
            lr=WHY_TUTORIAL,
            weight_decay=WHY_TUTORIAL,
        ),
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        d = backbone_dim(backbone)
        self.predictor = MLPHead(d, self.hp.pred_hidden_dim, d) if self.hp.predictor else nn.Identity()
        self.target_backbone = frozen_copy(self.backbone)

    def _target(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            t = self.target_backbone(x).float()
            return F.layer_norm(t, t.shape[-1:]) if self.hp.target_norm else t

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x1, x2 = views
        p1, p2 = (self.predictor(self.backbone(x)).float() for x in (x1, x2))
        loss = (F.mse_loss(p1, self._target(x2)) + F.mse_loss(p2, self._target(x1))) / 2
        return loss, {}

    def on_step_end(self, progress: float) -> None:
        update_targets(self, progress)  # target_backbone; tau scaled to the run length (ssl_bench.ema)
