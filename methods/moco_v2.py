"""MoCo v2 — He, Fan, Wu, Xie & Girshick, "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020 (arXiv:1911.05722), with the v2 improvements of Chen, Fan, Girshick & He,
"Improved Baselines with Momentum Contrastive Learning" (arXiv:2003.04297): MLP head, stronger
augmentation, cosine schedule.

Query encoder (backbone + 2-layer MLP head) vs key encoder (its EMA copy, no gradient); InfoNCE
with the positive key and ``queue_size`` negatives from a FIFO queue of past keys, temperature
0.2. Both views serve as queries (symmetrised loss, as solo-learn does). Defaults: head 512 -> 128
(paper 2048 -> 128), queue 4096 (paper 65536), ``ema_tau`` 0.99 (paper 0.999; our runs are short).

Shuffle-BN (paper Sec. 3.3), single-device form: every batch norm of the query AND key encoders
(backbone and head) is a ``SplitBatchNorm`` with ``bn_splits`` 8 sub-batches (the official MoCo
CIFAR demo's ``SplitBatchNorm``, 8 splits), and the key batch is shuffled before the key encoder
and unshuffled after. So a key is normalised with statistics of a random sub-batch of other
images, not those of its query's sub-batch, and batch statistics cannot mark the positive.
The global batch must be divisible by ``bn_splits``; ``bn_splits=1`` is plain BN over the whole
batch without shuffle (the leaky variant). Under DDP on N processes (``bn_splits`` a multiple of N)
each process holds ``bn_splits / N`` of the sub-batches (no synchronised BN) and the keys are
shuffled over the global batch (gathered, permuted, computed on this process's slice, gathered
back and unshuffled: the paper's shuffle across GPUs), so N processes compute the gradient one
process computes on the same global batch.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_bench import losses
from ssl_bench.distributed import gather, shard, world_size
from ssl_bench.errors import ConfigError
from ssl_bench.fidelity import PaperRecipe, WHY_LR, WHY_OPTIMIZER, WHY_VIEWS, WHY_WD, WHY_WIDTH
from ssl_bench.heads import MLPHead, cosine_tau, ema_update_, frozen_copy, split_batchnorm_
from ssl_bench.method import DataSpec, Method
from ssl_bench.registry import register_method

#: why the key encoder's momentum is 0.99 (moco-v2 keeps its own constant momentum, not ssl_bench.ema)
WHY_MOCO_EMA = (
    "a constant 0.999 averages the key encoder over ~1000 steps, more than the quick preset's 312-step "
    "run; 0.99 averages over ~100"
)


@register_method("moco-v2")
class MoCoV2(Method):
    defaults = dict(
        proj_hidden_dim=512, proj_dim=128, temperature=0.2, queue_size=4096, ema_tau=0.99, ema_cosine=False, bn_splits=8
    )
    #: MoCo v2: SGD momentum 0.9, lr 0.03 at batch 256, wd 1e-4 (``optimizer: paper``)
    paper_optim = dict(optimizer="sgd", lr=0.03, weight_decay=0.0001, lr_batch=256)
    paper = PaperRecipe(
        source=(
            'Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive Learning" (MoCo v2): '
            "facebookresearch/moco main_moco.py with --mlp --aug-plus --cos --moco-t 0.2 (ImageNet, ResNet-50, "
            "batch 256, 200 epochs)"
        ),
        heads="2-layer MLP head 2048 -> 128 (fc-ReLU-fc, no BN; moco/builder.py --mlp)",
        views="crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 (p 0.8), grayscale p 0.2, blur p 0.5, flip (--aug-plus)",
        ema="key encoder momentum 0.999, constant",
        temperature="0.2 (v2 paper; main_moco.py default --moco-t 0.07 is MoCo v1's)",
        hparams=dict(
            proj_hidden_dim=2048, proj_dim=128, temperature=0.2, queue_size=65536, ema_tau=0.999, ema_cosine=False
        ),
        optim=dict(optimizer="SGD (momentum 0.9)", lr="0.03 at batch 256, cosine", weight_decay=1e-4),
        ours=dict(views="crop 0.3-1, flip, brightness/contrast 0.4 (p 0.8)", ema="key encoder momentum 0.99, constant"),
        deviations=dict(
            heads=WHY_WIDTH + "; our head has BN between its layers (the reference's has none)",
            proj_hidden_dim=WHY_WIDTH,
            views=WHY_VIEWS,
            queue_size=(
                "4096: a 65536 queue refreshes in 512 steps of batch 128, longer than the quick preset's "
                "whole run, so most negatives would be keys of a much older encoder"
            ),
            ema=WHY_MOCO_EMA,
            ema_tau=WHY_MOCO_EMA,
            optimizer=WHY_OPTIMIZER,
            lr=WHY_LR,
            weight_decay=WHY_WD + " (here both are 1e-4; the paper's is coupled SGD decay)",
            shuffle_bn=(
                "the paper shuffles BN across 8 GPUs; here SplitBatchNorm with bn_splits 8 on one device "
                "(the official CIFAR demo's form)"
            ),
        ),
    )

    queue: torch.Tensor  # buffers (register_buffer), declared for the type checker
    queue_ptr: torch.Tensor

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__(backbone, hp, spec)
        h = self.hp
        if h.queue_size < 1:
            raise ConfigError("moco-v2: queue_size must be >= 1")
        if h.bn_splits < 1:
            raise ConfigError(f"moco-v2: bn_splits must be >= 1, got {h.bn_splits}")
        self.projector = MLPHead(self.out_dim, h.proj_hidden_dim, h.proj_dim, num_layers=2)
        if h.bn_splits % world_size():
            raise ConfigError(
                f"moco-v2: bn_splits ({h.bn_splits}) must be a multiple of the {world_size()} processes "
                f"(each process holds bn_splits / processes of the batch-norm sub-batches)"
            )
        self.local_splits = h.bn_splits // world_size()  # this process's share of the global sub-batches
        if h.bn_splits > 1:  # before the key encoder is copied: both encoders split their BN
            split_batchnorm_(self.backbone, self.local_splits)
            split_batchnorm_(self.projector, self.local_splits)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(h.queue_size, h.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._keys: Tensor | None = None
        self.sync_batchnorm = h.bn_splits <= 1  # split BN stays per process under DDP

    @torch.no_grad()
    def _key_embeddings(self, x: Tensor) -> Tensor:
        """Key embeddings of this process's rows; with split BN the global batch is shuffled before
        the key encoder and unshuffled after (the official MoCo demo's single-device shuffle-BN; under
        DDP, the paper's shuffle across processes)."""
        if self.hp.bn_splits <= 1:
            return F.normalize(self.key_projector(self.key_backbone(x)).float(), dim=1)
        # the shuffle draws from the step's own stream (self.clock.generator()), not the global RNG
        xg = gather(x)
        perm = torch.randperm(xg.shape[0], generator=self.clock.generator()).to(x.device)
        k = gather(self.key_projector(self.key_backbone(shard(xg[perm]))))
        return F.normalize(shard(k[torch.argsort(perm)]).float(), dim=1)

    def training_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x1, x2 = views
        if self.training and self.hp.bn_splits > 1 and x1.shape[0] % self.local_splits:
            raise ConfigError(
                f"moco-v2: the batch ({x1.shape[0] * world_size()}) must be divisible by bn_splits "
                f"({self.hp.bn_splits}); change --batch-size or --opt bn_splits"
            )
        q1, q2 = (self.projector(self.backbone(x)) for x in (x1, x2))
        with torch.no_grad():
            k1, k2 = self._key_embeddings(x1), self._key_embeddings(x2)
        queue = self.queue.clone()  # enqueued after the step: the loss sees only past keys
        loss = (
            losses.info_nce_queue(q1, k2, queue, self.hp.temperature)
            + losses.info_nce_queue(q2, k1, queue, self.hp.temperature)
        ) / 2
        self._keys = torch.cat([gather(k1), gather(k2)])  # under DDP every rank enqueues the global batch
        return loss, {}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        h = self.hp
        tau = cosine_tau(h.ema_tau, progress) if h.ema_cosine else h.ema_tau
        ema_update_(self.key_backbone, self.backbone, tau)
        ema_update_(self.key_projector, self.projector, tau)
        if self._keys is not None:
            keys = self._keys[-h.queue_size :]
            idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % h.queue_size
            self.queue[idx] = keys.to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + len(keys)) % h.queue_size)
            self._keys = None
