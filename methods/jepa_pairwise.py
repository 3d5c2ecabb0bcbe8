"""Global pairwise JEPA — the "global pairwise" variant of the JEA tutorial: every embedding of
the first views is compared with every embedding of the second views,
L = mean_{i,j} ||f(x_i) - f(x'_j)||^2 (LeCun 2022, openreview BZ5a1r-kVsf, for the energy view).

Like ``jepa`` this has no regulariser, and it collapses even more directly: the loss equals
Var(f(x)) + Var(f(x')) + ||mean f(x) - mean f(x')||^2 (summed over dimensions), so it only
shrinks the spread of the embeddings and never looks at which pairs are positives. It is kept
as the tutorial states it, as a second collapse reference. Defaults: no projector
(``proj_dim=0``; > 0 adds a linear one).
"""

from typing import Any

from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.distributed import gather
from ssl_bench.fidelity import collapse_reference_recipe
from ssl_bench.heads import backbone_dim
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method


@register_method("jepa-pairwise")
class JEPAPairwise(Method):
    defaults = dict(proj_dim=0)
    paper = collapse_reference_recipe(
        "The JEA tutorial's global pairwise JEPA: mean over all pairs (i, j) of ||f(x_i) - f(x'_j)||^2 "
        "(LeCun 2022 for the energy view); a collapse reference"
    )

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        self.projector = nn.Linear(backbone_dim(backbone), self.hp.proj_dim) if self.hp.proj_dim > 0 else nn.Identity()

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z1, z2 = (self.projector(self.backbone(v)).float() for v in views)
        return losses.pairwise_squared_distance(z1, gather(z2)), {}  # under DDP: against the global batch
