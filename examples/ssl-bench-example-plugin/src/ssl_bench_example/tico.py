"""TiCo — Zhu, Liu & Huang, "TiCo: Transformation Invariance and Covariance Contrast for
Self-Supervised Visual Representation Learning", 2022 (arXiv:2206.10698).

Two views through backbone + projector, L2-normalised. The loss rewards agreement of the two
views and penalises the embeddings' energy along a running covariance matrix C (an EMA over
batches, outside the gradient), which pushes the representation to spread over all directions:

    C <- beta * C + (1 - beta) * z1^T z1 / N
    loss = -mean_i <z1_i, z2_i> + rho * mean_i z1_i^T C z1_i

Defaults: projector 512 -> 128 (paper 4096 -> 256), beta 0.9, rho 8.
"""
import torch
import torch.nn.functional as F

from ssl_bench.heads import MLPHead
from ssl_bench.method import Method


def tico_loss(z1: torch.Tensor, z2: torch.Tensor, cov: torch.Tensor, rho: float) -> torch.Tensor:
    """The TiCo objective for normalised embeddings and a (detached) covariance estimate."""
    return -(z1 * z2).sum(1).mean() + rho * ((z1 @ cov) * z1).sum(1).mean()


class TiCo(Method):
    defaults = dict(proj_hidden_dim=512, proj_dim=128, beta=0.9, rho=8.0)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.projector = MLPHead(backbone.out_dim, h.proj_hidden_dim, h.proj_dim)
        self.register_buffer("cov", torch.zeros(h.proj_dim, h.proj_dim))  # saved in the resume state
        self._batch_cov = None

    def training_step(self, views):
        z1, z2 = (F.normalize(self.projector(self.backbone(v)).float(), dim=1) for v in views)
        with torch.no_grad():
            self._batch_cov = z1.t() @ z1 / z1.shape[0]
            cov = self.hp.beta * self.cov + (1 - self.hp.beta) * self._batch_cov
        return tico_loss(z1, z2, cov, self.hp.rho), {}

    @torch.no_grad()
    def on_step_end(self, progress):
        if self._batch_cov is not None:  # the EMA advances once per optimiser step
            self.cov.mul_(self.hp.beta).add_(self._batch_cov, alpha=1 - self.hp.beta)
            self._batch_cov = None
