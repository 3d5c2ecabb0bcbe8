"""DINO — Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021 (arXiv:2104.14294).

Self-distillation without labels: a student (backbone + DINO head ending in a weight-normalised
layer of ``out_dim`` logits) matches the softmax of an EMA teacher's logits on the other view.
Collapse is avoided by centering (an EMA of the teacher's mean logits, ``center_momentum``) and
sharpening (teacher temperature below the student's). Defaults: head 512 hidden -> 64 bottleneck
-> 1024 prototypes (paper 2048 -> 256 -> 65536), temperatures 0.1 / 0.04 (paper; no teacher
temperature warm-up), tau 0.99 -> 1 cosine (paper 0.996; raised for short runs to 1 - 10 /
total_steps, :mod:`ssl_bench.ema`), two global views (no multi-crop, for CPU budgets). As in the
paper, the teacher (``target_backbone``) is the evaluated network that checkpoints store.
"""
import torch

from ssl_bench import losses
from ssl_bench.distributed import mean_over_ranks
from ssl_bench.ema import update_targets
from ssl_bench.heads import DINOHead, frozen_copy
from ssl_bench.method import Method
from ssl_bench.registry import register_method


@register_method("dino")
class DINO(Method):
    evaluated = "teacher"  # the paper evaluates the teacher (checkpoint_key=teacher)
    defaults = dict(hidden_dim=512, bottleneck_dim=64, out_dim=1024, student_temp=0.1, teacher_temp=0.04,
                    center_momentum=0.9, ema_tau=0.99, ema_cosine=True)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        self.head = DINOHead(backbone.out_dim, h.hidden_dim, h.bottleneck_dim, h.out_dim)
        self.target_backbone = frozen_copy(self.backbone)  # the teacher
        self.target_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, h.out_dim))
        self._teacher_mean = None

    def training_step(self, views):
        h = self.hp
        s1, s2 = (self.head(self.backbone(x)).float() for x in views)
        with torch.no_grad():
            t1, t2 = (self.target_head(self.target_backbone(x)).float() for x in views)
        loss = (losses.dino_loss(s1, t2, self.center, h.student_temp, h.teacher_temp)
                + losses.dino_loss(s2, t1, self.center, h.student_temp, h.teacher_temp)) / 2
        self._teacher_mean = torch.cat([t1, t2]).mean(0, keepdim=True)
        return loss, {}

    @torch.no_grad()
    def on_step_end(self, progress):
        h = self.hp
        update_targets(self, progress)  # the teacher: target_backbone, target_head
        if self._teacher_mean is not None:
            mean = mean_over_ranks(self._teacher_mean)  # the global batch's under DDP
            self.center.mul_(h.center_momentum).add_(mean, alpha=1 - h.center_momentum)
            self._teacher_mean = None
