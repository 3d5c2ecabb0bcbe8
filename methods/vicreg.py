"""VICReg — Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906).

Two views through backbone + expander; loss = inv_weight * MSE + var_weight * std hinge +
cov_weight * off-diagonal covariance. Defaults: expander 3 x 512 (paper: 3 x 8192),
weights 25 / 25 / 1 as in the paper. Setting a weight to 0 is the paper's ablation.
Under DDP the batch statistics cover the global batch (embeddings all-gathered with gradients).
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


@register_method("vicreg")
class VICReg(Method):
    defaults = dict(
        proj_hidden_dim=512,
        proj_dim=512,
        proj_layers=3,
        inv_weight=25.0,
        var_weight=25.0,
        cov_weight=1.0,
        solarize_p1=0.0,
        solarize_p2=0.2,
    )
    #: VICReg: LARS, base lr 0.2 x batch/256, wd 1e-6 (``optimizer: paper``)
    paper_optim = dict(optimizer="lars", lr=0.2, weight_decay=1e-06, lr_batch=256)
    paper = PaperRecipe(
        source=("Bardes, Ponce & LeCun 2022 (VICReg): facebookresearch/vicreg main_vicreg.py (ResNet-50, batch 2048)"),
        heads="expander 8192-8192-8192 (BN, ReLU; last Linear without bias)",
        views=(
            "BYOL-style, asymmetric (facebookresearch/vicreg augmentations.py, TrainTransform): crop 0.08-1, flip, "
            "colour jitter 0.4/0.4/0.2/0.1 (p 0.8), grayscale p 0.2, blur p 1.0 / 0.1, solarize p 0 / 0.2 (blur "
            "0.5 and solarize 0.5 on both views, which an earlier declaration cited, are from a fork)"
        ),
        hparams=dict(
            proj_hidden_dim=8192,
            proj_dim=8192,
            proj_layers=3,
            inv_weight=25.0,
            var_weight=25.0,
            cov_weight=1.0,
            solarize_p1=0.0,
            solarize_p2=0.2,
        ),
        optim=dict(optimizer="LARS (eta 0.001)", lr="base-lr 0.2 x batch/256", weight_decay=1e-6),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8), solarize p 0 / 0.2"),
        deviations=dict(
            heads=WHY_WIDTH,
            proj_hidden_dim=WHY_WIDTH,
            proj_dim=WHY_WIDTH,
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
        h = self.hp
        inv, var, cov = losses.vicreg_terms(z1, z2)
        loss = h.inv_weight * inv + h.var_weight * var + h.cov_weight * cov
        return loss, {"inv": inv.detach(), "var": var.detach(), "cov": cov.detach()}
