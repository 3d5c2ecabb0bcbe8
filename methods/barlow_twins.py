"""Barlow Twins — Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021 (arXiv:2103.03230).

Two views through backbone + projector; the cross-correlation matrix of the batch-standardised
projections is pushed to the identity: sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2.
Defaults: projector 3 x 512 (paper 3 x 8192), lambd 5e-3 (paper), ``scale_loss`` 1 (solo-learn
uses 0.1 on CIFAR; the loss is multiplied by it). ``lambd=0`` is the paper's "no redundancy
reduction" ablation. Under DDP the cross-correlation covers the global batch (all-gather
with gradients).
Views: the default crop/flip/jitter recipe with asymmetric solarisation, p = ``solarize_p1`` 0 in
view 1 and ``solarize_p2`` 0.2 in view 2 (the paper's BYOL-style augmentation; applied to [0, 1]
images before normalisation; blur is not used at 28 px).
"""

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.distributed import gather
from ssl_bench.fidelity import PaperRecipe, WHY_LR, WHY_OPTIMIZER, WHY_VIEWS, WHY_WIDTH
from ssl_bench.heads import MLPHead
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method
from ssl_bench.views import asymmetric_views


@register_method("barlow-twins")
class BarlowTwins(Method):
    defaults = dict(
        proj_hidden_dim=512, proj_dim=512, proj_layers=3, lambd=5e-3, scale_loss=1.0, solarize_p1=0.0, solarize_p2=0.2
    )
    #: Barlow Twins: LARS, lr 0.2 x batch/256 for weights (biases and BN 0.0048: here the weights' lr), wd 1.5e-6
    #: (``optimizer: paper``)
    paper_optim = dict(optimizer="lars", lr=0.2, weight_decay=1.5e-06, lr_batch=256)
    paper = PaperRecipe(
        source=(
            "Zbontar, Jing, Misra, LeCun & Deny 2021 (Barlow Twins): facebookresearch/barlowtwins main.py "
            "(ResNet-50, batch 2048, 1000 epochs)"
        ),
        heads="projector 8192-8192-8192 (Linear without bias, BN, ReLU), affine-free BN before the loss",
        views=(
            "asymmetric: crop 0.08-1, flip, colour jitter (p 0.8), grayscale p 0.2, blur p 1.0 / 0.1, "
            "solarize p 0 / 0.2"
        ),
        hparams=dict(
            proj_hidden_dim=8192,
            proj_dim=8192,
            proj_layers=3,
            lambd=0.0051,
            scale_loss=1.0,
            solarize_p1=0.0,
            solarize_p2=0.2,
        ),
        optim=dict(
            optimizer="LARS (eta 0.001)",
            lr="0.2 x batch/256 for weights, 0.0048 x batch/256 for biases/BN",
            weight_decay=1e-6,
        ),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8), solarize p 0 / 0.2"),
        deviations=dict(
            heads=WHY_WIDTH,
            proj_hidden_dim=WHY_WIDTH,
            proj_dim=WHY_WIDTH,
            lambd="5e-3 is the value the paper's text gives (not verified here); main.py uses 0.0051",
            views=WHY_VIEWS,
            optimizer=WHY_OPTIMIZER,
            lr=WHY_LR,
            weight_decay="the harness's AdamW weight decay 1e-4 (none on 1-D parameters); 1e-6 belongs to LARS",
        ),
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(self.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=h.proj_layers)

    def make_views(self, spec: DataSpec, overrides: dict | None = None) -> Callable:
        # BYOL's asymmetric recipe: solarisation only in the second view (images in [0, 1])
        return asymmetric_views(spec.kind, overrides, (self.hp.solarize_p1, self.hp.solarize_p2), spec.views)

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z1, z2 = (gather(self.projector(self.backbone(v))) for v in views)  # global batch under DDP
        loss = self.hp.scale_loss * losses.barlow_twins_loss(z1.float(), z2.float(), self.hp.lambd)
        return loss, {}
