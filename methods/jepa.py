"""Basic JEPA — the joint-embedding energy E(x, x') = ||f(x) - f(x')||^2 minimised on positive
pairs, with nothing else (LeCun, "A Path Towards Autonomous Machine Intelligence", 2022,
openreview BZ5a1r-kVsf; the "basic JEPA" of the JEA tutorial on 2-D mixtures of Gaussians).

THIS METHOD COLLAPSES, ON PURPOSE: a constant encoder has zero loss and nothing prevents it. It is
the collapse reference of the benchmark (a row every regulariser must beat). Defaults: the
backbone's embedding is used directly (no projector, ``proj_dim=0``); ``proj_dim > 0`` adds a
linear projector.
"""

from typing import Any

from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.fidelity import collapse_reference_recipe
from ssl_bench.heads import backbone_dim
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method


@register_method("jepa")
class JEPA(Method):
    defaults = dict(proj_dim=0)
    paper = collapse_reference_recipe(
        'The JEA tutorial\'s basic JEPA (LeCun 2022, "A Path Towards Autonomous Machine Intelligence"): '
        "energy ||f(x) - f(x')||^2 on positive pairs, nothing else; a collapse reference"
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        self.projector = nn.Linear(backbone_dim(backbone), self.hp.proj_dim) if self.hp.proj_dim > 0 else nn.Identity()

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views)
        return losses.squared_distance(z1, z2), {}
