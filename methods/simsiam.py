"""SimSiam — Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
(arXiv:2011.10566).

Two views through backbone + projector (3 layers, BN on the output); a bottleneck predictor maps
one view's projection to the other's; loss = symmetric negative cosine with a stop-gradient on
the target branch. Ablation switches (the paper's Table 1 / Fig. 2): ``stop_gradient=False``
(collapses), ``predictor=False`` (collapses). ``out_bn_affine=True`` lets the projector's output BN
learn a scale and shift (the paper says "BN on the output fc"; the official code, and the default
here, use an affine-free BN, under which no constant output is reachable in training mode).
Defaults: projector 3 x 512 (paper 3 x 2048), predictor 512 -> 128 -> 512 (paper 2048 -> 512 -> 2048).
"""

from typing import Any

from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.fidelity import PaperRecipe, WHY_LR, WHY_OPTIMIZER, WHY_VIEWS, WHY_WD, WHY_WIDTH
from ssl_bench.heads import MLPHead
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method


@register_method("simsiam")
class SimSiam(Method):
    defaults = dict(
        proj_hidden_dim=512, proj_dim=512, pred_hidden_dim=128, stop_gradient=True, predictor=True, out_bn_affine=False
    )
    #: SimSiam: SGD momentum 0.9, lr 0.05 x batch/256, wd 1e-4 (the fixed predictor lr is not modelled)
    #: (``optimizer: paper``)
    paper_optim = dict(optimizer="sgd", lr=0.05, weight_decay=0.0001, lr_batch=256)
    paper = PaperRecipe(
        source=(
            "Chen & He 2021 (SimSiam), ImageNet recipe: facebookresearch/simsiam main_simsiam.py "
            "(ResNet-50, batch 512, 100 epochs, --fix-pred-lr)"
        ),
        heads=(
            "projector 3 layers 2048 with an affine-free BN on the output, predictor 2048 -> 512 -> 2048 "
            "(simsiam/builder.py)"
        ),
        views="crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 (p 0.8), grayscale p 0.2, blur p 0.5, flip",
        hparams=dict(
            proj_hidden_dim=2048,
            proj_dim=2048,
            pred_hidden_dim=512,
            stop_gradient=True,
            predictor=True,
            out_bn_affine=False,
        ),
        optim=dict(
            optimizer="SGD (momentum 0.9)", lr="0.05 x batch/256, cosine; predictor lr fixed", weight_decay=1e-4
        ),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8)"),
        deviations=dict(
            heads=WHY_WIDTH,
            proj_hidden_dim=WHY_WIDTH,
            proj_dim=WHY_WIDTH,
            pred_hidden_dim=WHY_WIDTH,
            views=WHY_VIEWS,
            optimizer=WHY_OPTIMIZER,
            lr=WHY_LR + "; the predictor's lr follows the same schedule (no fixed predictor lr here)",
            weight_decay=WHY_WD + " (here both are 1e-4; the paper's is coupled SGD decay)",
        ),
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(
            self.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=3, last_bn=True, last_bn_affine=h.out_bn_affine
        )
        self.predictor = MLPHead(h.proj_dim, h.pred_hidden_dim, h.proj_dim, num_layers=2) if h.predictor else None

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        p1, p2 = (self.predictor(z) if self.predictor is not None else z for z in (z1, z2))
        t1, t2 = (z1.detach(), z2.detach()) if self.hp.stop_gradient else (z1, z2)
        loss = (losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)) / 2
        return loss, {"z_std": z1.detach().float().div(z1.detach().norm(dim=1, keepdim=True)).std(0).mean()}
