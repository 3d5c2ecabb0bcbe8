"""Denoising score matching — Vincent, "A Connection Between Score Matching and Denoising
Autoencoders", Neural Computation 2011; noise-conditional form of Song & Ermon, "Generative
Modeling by Estimating Gradients of the Data Distribution", NeurIPS 2019 (arXiv:1907.05600).
The score-based model of the JEA tutorial.

x~ = x + eps, eps ~ N(0, sigma^2 I) with sigma drawn per sample log-uniformly in
[``sigma_min``, ``sigma_max``] (``sigma_min == sigma_max``: one noise level, as in the tutorial);
the score network s(x~, sigma) = head(backbone(x~), log sigma) predicts -eps / sigma^2 for every
input coordinate; loss 1/2 sigma^2 ||s + eps / sigma^2||^2 (Song & Ermon's weighting). The encoder
is the score network's trunk (the backbone): ``encode`` embeds clean inputs. Views: flips only
for images (no crops or jitter: the score is that of the data), none for vectors. Defaults:
sigma in [0.1, 1] (standardised pixels / mog2d units), head: 2-layer MLP with 512 hidden units.
"""
import math

import torch

from ssl_bench import losses
from ssl_bench.distributed import shard, world_size
from ssl_bench.errors import ConfigError
from ssl_bench.fidelity import PaperRecipe, WHY_LR
from ssl_bench.heads import MLPHead
from ssl_bench.method import Method
from ssl_bench.registry import register_method
from ssl_bench.views import MultiView, default_augment


@register_method("dsm")
class DSM(Method):
    defaults = dict(sigma_min=0.1, sigma_max=1.0, head_hidden_dim=512)
    paper = PaperRecipe(
        source=("Vincent 2011 (denoising score matching); the noise-conditional form and recipe of Song & Ermon "
                "2019 (NCSN: 10 noise levels, geometric from 1 to 0.01, Adam lr 1e-3; values from the paper, "
                "not verified against code)"),
        heads="score network s(x~, sigma): a RefineNet (NCSN) that sees the noisy image",
        views="none (the score is that of the data; NCSN uses random flips on CIFAR-10, not verified)",
        hparams=dict(sigma_min=0.01, sigma_max=1.0),
        optim=dict(optimizer="Adam", lr=1e-3, weight_decay=0.0),
        ours=dict(views="flip only (no crop, no jitter)"),
        deviations=dict(
            heads="the encoder under study (cnn-small) plus a small head; no RefineNet, which would dwarf the encoder",
            views="flips only: they keep the data distribution (NCSN flips CIFAR-10 images; not verified)",
            sigma_min=("0.1 with sigma drawn log-uniformly: ssl-bench measures the encoder's representation, not "
                       "samples; not searched on validation"),
            optimizer="the harness's AdamW for every method",
            lr=WHY_LR, weight_decay="the harness's AdamW weight decay 1e-4 for every method",
        ))
    n_views = 1

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        h = self.hp
        if not 0 < h.sigma_min <= h.sigma_max:
            raise ConfigError("dsm: need 0 < sigma_min <= sigma_max")
        if spec is None:
            raise ConfigError("dsm needs the data spec (its score head outputs one value per input coordinate)")
        self.in_shape = tuple(spec.input_shape)
        self.head = MLPHead(backbone.out_dim + 1, h.head_hidden_dim, math.prod(self.in_shape), num_layers=2)

    def make_views(self, spec, overrides=None):
        base = ({"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "jitter": 0.0} if spec.kind == "image"
                else {"noise_std": 0.0})
        return MultiView(default_augment(spec.kind, {**base, **(overrides or {})}), n=1)

    def training_step(self, views):
        x = views[0]
        b, h = x.shape[0], self.hp
        lo, hi = math.log(h.sigma_min), math.log(h.sigma_max)
        # CPU global RNG, drawn for the global batch and sliced under DDP: reproducible on every
        # device and for any number of ranks
        gb = b * world_size()
        log_sigma = shard(torch.rand(gb) * (hi - lo) + lo)
        sigma = log_sigma.exp().to(x.device, x.dtype)
        noise = shard(torch.randn((gb, *x.shape[1:]))).to(x.device, x.dtype) * sigma.view(-1, *([1] * (x.dim() - 1)))
        feats = self.backbone(x + noise)
        score = self.head(torch.cat([feats, log_sigma.to(feats.device, feats.dtype).unsqueeze(1)], 1))
        return losses.dsm_loss(score.float().view(x.shape), noise.float(), sigma.float()), {}
