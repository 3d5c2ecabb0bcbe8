"""SwAV — Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020 (arXiv:2006.09882).

Online clustering: projections are scored against learnable prototypes (cosine similarities);
each view's codes are the Sinkhorn-Knopp equipartitioned assignment of its scores (no gradient),
and each view predicts the other view's codes (swapped prediction). Defaults: projector 512 ->
128, 100 prototypes (paper 3000 for ImageNet), temperature 0.1, Sinkhorn epsilon 0.05 and
3 iterations (paper), two views (no multi-crop), no queue, prototypes trained from the first step
(``freeze_prototypes_steps`` > 0 freezes them for that many steps, as the paper does for the
first epoch).
"""
import torch
import torch.nn.functional as F

from ssl_bench import losses
from ssl_bench.heads import CosineClassifier, MLPHead
from ssl_bench.method import Method
from ssl_bench.registry import register_method


@register_method("swav")
class SwAV(Method):
    defaults = dict(proj_hidden_dim=512, proj_dim=128, num_prototypes=100, temperature=0.1, sinkhorn_eps=0.05,
                    sinkhorn_iters=3, freeze_prototypes_steps=0)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(backbone.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=2)
        self.prototypes = CosineClassifier(h.proj_dim, h.num_prototypes)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def training_step(self, views):
        h = self.hp
        frozen = int(self.step) < h.freeze_prototypes_steps  # then no gradient reaches the prototypes
        protos = F.normalize(self.prototypes.weight.detach() if frozen else self.prototypes.weight, dim=1)
        s1, s2 = (F.normalize(self.projector(self.backbone(x)).float(), dim=1) @ protos.float().t() for x in views)
        q1 = losses.sinkhorn_knopp(s1.detach(), h.sinkhorn_eps, h.sinkhorn_iters)
        q2 = losses.sinkhorn_knopp(s2.detach(), h.sinkhorn_eps, h.sinkhorn_iters)
        return losses.swav_loss(s1, s2, q1, q2, h.temperature), {}

    def on_step_end(self, progress):
        self.step += 1
