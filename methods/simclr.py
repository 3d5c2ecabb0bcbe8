"""SimCLR — Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020 (arXiv:2002.05709).

Two augmented views, a 2-layer MLP projector, NT-Xent over the 2N views of the batch.
Defaults: projector 512 -> 128 (paper: 2048 -> 128 for ResNet-50), temperature 0.1 (paper's
small-batch optimum is 0.1-0.2).
"""
from ssl_bench import losses
from ssl_bench.heads import MLPHead
from ssl_bench.method import Method
from ssl_bench.registry import register_method


@register_method("simclr")
class SimCLR(Method):
    defaults = dict(proj_hidden_dim=512, proj_dim=128, temperature=0.1)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(backbone.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=2)

    def training_step(self, views):
        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        loss = losses.info_nce(z1, z2, self.hp.temperature)
        return loss, {}
