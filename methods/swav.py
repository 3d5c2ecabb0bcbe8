"""SwAV — Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020 (arXiv:2006.09882).

Online clustering: projections are scored against learnable prototypes (cosine similarities);
the codes of each *global* crop are the Sinkhorn-Knopp equipartitioned assignment of its scores
(no gradient), and every other crop, global or local, predicts them (swapped prediction, averaged
as in the reference ``main_swav.py``). Defaults and the paper:

* multi-crop: 2 global crops at full size (crop scale from the ``views`` config, 0.3-1) + ``n_local``
  6 local crops at half size (``local_size`` 0 = half: 28 -> 14 px), crop scale 0.05-0.3 (paper
  2x224 + 6x96, scales 0.14-1 / 0.05-0.14). ``n_local=0`` gives the two-view version.
* queue: the last ``queue_length`` 3840 projections of each global crop (per process), used from
  epoch ``queue_start_epoch`` 1 on, once full (paper: 3840 from epoch 15 of 200-800 for small
  batches; our runs are a few epochs long). With batch 128 and 100 prototypes the batch alone
  cannot be equipartitioned sensibly. ``queue_length=0`` turns it off.
* prototypes frozen (no update) during the first ``freeze_prototypes_epochs`` 1 epoch (paper: the
  first 313 iterations, one ImageNet epoch at batch 4096).
* projector 512 -> 128, 100 prototypes (paper 2048 -> 128, 3000 for ImageNet), temperature 0.1,
  Sinkhorn epsilon 0.05 and 3 iterations (paper).
"""

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.errors import ConfigError
from ssl_bench.fidelity import PaperRecipe, WHY_LR, WHY_OPTIMIZER, WHY_VIEWS, WHY_WIDTH
from ssl_bench.heads import CosineClassifier, MLPHead, forward_by_size
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method
from ssl_bench.views import method_multi_crop

N_GLOBAL = 2


@register_method("swav")
class SwAV(Method):
    defaults = dict(
        proj_hidden_dim=512,
        proj_dim=128,
        num_prototypes=100,
        temperature=0.1,
        sinkhorn_eps=0.05,
        sinkhorn_iters=3,
        freeze_prototypes_epochs=1.0,
        queue_length=3840,
        queue_start_epoch=1.0,
        n_local=6,
        local_size=0,
        local_scale_min=0.05,
        local_scale_max=0.3,
    )
    #: SwAV: LARS, lr 4.8 at batch 4096 (0.3 x batch/256), wd 1e-6 (``optimizer: paper``)
    paper_optim = dict(optimizer="lars", lr=0.3, weight_decay=1e-06, lr_batch=256)
    paper = PaperRecipe(
        source=(
            "Caron et al. 2020 (SwAV), small-batch recipe: facebookresearch/swav "
            "scripts/swav_200ep_bs256_pretrain.sh (ResNet-50, batch 256, 200 epochs) with main_swav.py"
        ),
        heads="projector 2048 -> 128, 3000 prototypes (cosine)",
        views=(
            "multi-crop 2 x 224 (scale 0.14-1) + 6 x 96 (scale 0.05-0.14), colour jitter, grayscale, blur, "
            "flip (src/multicropdataset.py, not re-read here)"
        ),
        temperature="0.1",
        hparams=dict(
            proj_hidden_dim=2048,
            proj_dim=128,
            num_prototypes=3000,
            temperature=0.1,
            sinkhorn_eps=0.05,
            sinkhorn_iters=3,
            queue_length=3840,
            queue_start_epoch=15.0,
            n_local=6,
            local_scale_min=0.05,
            local_scale_max=0.14,
        ),
        optim=dict(optimizer="SGD + LARC (trust 0.001)", lr="0.6 at batch 256, cosine to 0.0006", weight_decay=1e-6),
        ours=dict(
            views=("multi-crop 2 x 28 (scale 0.3-1) + 6 x 14 (scale 0.05-0.3), brightness/contrast 0.4 (p 0.8), flip")
        ),
        deviations=dict(
            heads=WHY_WIDTH,
            proj_hidden_dim=WHY_WIDTH,
            num_prototypes=(
                "100 for a 10-class dataset at batch 128 (3000 is for ImageNet's 1000 classes); not "
                "searched on validation"
            ),
            queue_start_epoch="epoch 1: our runs last a few epochs, the paper's 200-800",
            freeze_prototypes_epochs=(
                "the batch-256 script freezes the prototypes for 5005 iterations (main_swav.py's "
                "default: 313, one ImageNet epoch at batch 4096); here for the first epoch"
            ),
            views=WHY_VIEWS + "; multi-crop scaled to 28 px (the audit's analogue, not searched on validation)",
            local_scale_max="0.3: the audit's 28 px analogue (not searched on validation)",
            optimizer=WHY_OPTIMIZER,
            lr=WHY_LR,
            weight_decay="the harness's AdamW weight decay 1e-4 (none on 1-D parameters); 1e-6 belongs to LARC",
        ),
    )

    queue: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        h = self.hp
        if h.queue_length < 0 or h.n_local < 0 or h.freeze_prototypes_epochs < 0 or h.queue_start_epoch < 0:
            raise ConfigError(
                "swav: queue_length, n_local, freeze_prototypes_epochs and queue_start_epoch must be >= 0"
            )
        self.projector = MLPHead(self.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=2)
        self.prototypes = CosineClassifier(h.proj_dim, h.num_prototypes)
        # newest first, as in the reference; zeros until filled
        self.register_buffer("queue", torch.zeros(N_GLOBAL if h.queue_length else 0, h.queue_length, h.proj_dim))

    def make_views(self, spec: DataSpec, overrides: dict | None = None) -> Callable:
        return method_multi_crop(self, spec, overrides, N_GLOBAL)

    # -- where training is (the harness's clock) -------------------------------------------------
    def _queue_steps(self) -> int:
        """Steps since the queue started filling (0 before its start or outside the harness)."""
        c = self.clock
        if not self.hp.queue_length or not c.steps_per_epoch:
            return 0
        start = int(round(self.hp.queue_start_epoch * c.steps_per_epoch))
        return max(0, c.step - start + 1) if c.step >= start else 0

    def frozen_parameters(self) -> tuple[str, ...]:
        c = self.clock
        return ("prototypes",) if c.steps_per_epoch and c.epoch < self.hp.freeze_prototypes_epochs else ()

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        h = self.hp
        n = views[0].shape[0]
        z = F.normalize(self.projector(forward_by_size(self.backbone, views)).float(), dim=1)
        protos = F.normalize(self.prototypes.weight.float(), dim=1)
        scores = (z @ protos.t()).split(n)
        filling = self._queue_steps()
        loss: torch.Tensor | float = 0.0
        for i in range(N_GLOBAL):
            with torch.no_grad():
                out = scores[i].detach()
                if filling:
                    if (filling - 1) * n >= h.queue_length:  # full before this step: use it
                        out = torch.cat([self.queue[i] @ protos.t(), out])
                    self.queue[i] = torch.cat([z[i * n : (i + 1) * n].detach(), self.queue[i]])[: h.queue_length]
                q = losses.sinkhorn_knopp(out, h.sinkhorn_eps, h.sinkhorn_iters)[-n:]
            sub = sum(
                -(q * F.log_softmax(scores[v] / h.temperature, dim=1)).sum(1).mean()
                for v in range(len(views))
                if v != i
            )
            loss = loss + sub / (len(views) - 1)
        return cast(Tensor, loss) / N_GLOBAL, {}
