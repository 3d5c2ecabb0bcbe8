"""LeJEPA — Balestriero & LeCun, "LeJEPA: Provable and Scalable Self-Supervised Learning Without
the Heuristics", 2025 (arXiv:2511.08544).

``num_views`` views through backbone + projector; loss = lambd * SIGReg + (1 - lambd) * inv,
where inv is the mean squared distance of each view's projection to the views' mean and SIGReg
the sliced Epps-Pulley test of every view's projections against N(0, I) (``losses.sigreg``:
``num_slices`` random unit directions, t in [0, 3], 17 trapezoid knots; fresh directions every
step, drawn from torch's global RNG on the CPU). No stop-gradient, no teacher, no predictor.
Defaults: projector 512 -> 512 -> 64 with BN (paper/minimal example: 2048 x 2 -> 16..128),
lambd 0.05 (paper's default), 256 slices (paper), 2 views (paper: 2 global + 6 local; more views
cost proportionally more here). ``lambd=0`` removes the regulariser (then it collapses like
``jepa``).
"""
import torch

from ssl_bench import losses
from ssl_bench.distributed import gather
from ssl_bench.errors import ConfigError
from ssl_bench.heads import MLPHead
from ssl_bench.method import Method
from ssl_bench.registry import register_method
from ssl_bench.views import MultiView, default_augment


@register_method("lejepa")
class LeJEPA(Method):
    defaults = dict(proj_hidden_dim=512, proj_dim=64, proj_layers=3, lambd=0.05, num_slices=256,
                    num_views=2, t_max=3.0, num_points=17)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        if h.num_views < 2 or not 0 <= h.lambd <= 1 or h.num_points < 2:
            raise ConfigError("lejepa: num_views must be >= 2, lambd in [0, 1] and num_points >= 2")
        self.projector = MLPHead(backbone.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=h.proj_layers)

    def make_views(self, spec, overrides=None):
        return MultiView(default_augment(spec.kind, overrides), n=self.hp.num_views)

    def training_step(self, views):
        h = self.hp
        n = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views))).float().reshape(len(views), n, -1)
        inv = losses.lejepa_invariance(z)
        zg = gather(z.transpose(0, 1).contiguous()).transpose(0, 1)  # (V, global N, D) under DDP
        reg = losses.sigreg(zg, num_slices=h.num_slices, t_max=h.t_max, num_points=h.num_points)
        loss = h.lambd * reg + (1 - h.lambd) * inv
        return loss, {"inv": inv.detach(), "sigreg": reg.detach()}
