"""BatchNorm statistics of an untrained network, re-estimated on training images.

A freshly built network keeps BN running statistics of mean 0 and variance 1, which fit no data:
in eval mode its features are normalised by the wrong statistics at every layer. The fair
untrained reference (the ``random-init`` rows) first re-estimates them, as
``torch.optim.swa_utils.update_bn`` does: the statistics are reset, then every BN layer (and only
the BN layers: dropout and the rest stay in eval mode) runs in train mode over the training images,
without gradients, averaging the batch statistics cumulatively (``momentum=None``). Each layer
sees the batch-normalised output of the layers before it, as in training. The weights are not
touched. A network without BN layers (a ViT) is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from . import precision as prec
from . import streaming
from .data import Data
from .sampling import subsample

#: At most this many training images (a seeded sample of them when the split is larger).
MAX_IMAGES = 60_000


def batchnorm_layers(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module,
    data: Data,
    device: torch.device,
    max_images: int = MAX_IMAGES,
    batch_size: int = 256,
    seed: int = 0,
) -> int:
    """Re-estimate the running statistics of every BN layer of ``net`` on (at most ``max_images``
    of) ``data``'s training images; returns the number of images used, 0 when ``net`` has no BN
    layer. ``net`` is left in eval mode."""
    bns = batchnorm_layers(net)
    net.eval()
    if not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average of the batch statistics
        bn.train()
    cl = prec.wants_channels_last(data.kind, data.input_shape)
    seen = 0
    try:
        for xb in _batches(data, max_images, batch_size, seed):
            if len(xb) < 2:  # a batch of one has no variance
                continue
            net(prec.to_layout(data.normalize(data.to_float(xb.to(device))), cl))
            seen += len(xb)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        net.eval()
    return seen


def _batches(data: Data, max_images: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    x = data.x_train
    if isinstance(x, streaming.ImageSource):  # images on disk: the first max_images of the source, decoded in batches
        seen = 0
        for xb, _y, _bad, ok in streaming.loader(x, batch_size=batch_size, substitute=False):
            xb = xb[ok]
            yield xb[: max_images - seen]
            seen += len(xb)
            if seen >= max_images:
                return
        return
    x = subsample(x, max_images, seed)
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size]
