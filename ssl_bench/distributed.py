"""Data-parallel training on torch.distributed (``torchrun``), CPU (gloo) and CUDA (NCCL).

``torchrun --nproc-per-node N -m ssl_bench train ...`` starts N processes; the trainer joins the
process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and wraps the method in DistributedDataParallel. What makes a
run on N ranks train the same model as one process on the same global batch:

* every rank draws the same global batch and the same views of it, then keeps its own disjoint
  slice (:func:`shard`): the views do not depend on the number of ranks;
* gradients are averaged by DDP; batch norm statistics are computed over the global batch
  (:func:`convert_sync_batchnorm`);
* losses that compare samples across the batch see the whole global batch through
  :func:`gather`, an all-gather whose backward returns to each rank the gradient of its own rows
  summed over all ranks (an all-reduce). With DDP's averaging this gives exactly the gradient of
  the global loss, whether a rank computes the loss for its own anchors only (``info_nce``) or
  the whole loss on the gathered batch (VICReg's variance and covariance terms).

Everything here is a no-op in a single process, so methods and losses call it unconditionally.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError
from .heads import adopt_batchnorm_state


# ---------------------------------------------------------------------------------- process group
def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return rank() == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun describes; True when training runs on more than one rank.

    A group created by the caller (tests, notebooks) is used as it is. Backend: NCCL on CUDA,
    gloo on CPU.
    """
    if is_initialized():
        return world_size() > 1
    if env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} not set: start multi-process "
            f"training with `torchrun --nproc-per-node N -m ssl_bench train ...`"
        )
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    atexit.register(_destroy)
    return world_size() > 1


def _destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(device: torch.device) -> torch.device:
    """On CUDA with several ranks per node, rank ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and world_size() > 1 and device.index is None:
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


# ------------------------------------------------------------------------------ data and tensors
def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice (dim 0) of a global batch; the whole batch in one process."""
    w = world_size()
    if w == 1:
        return x
    n = x.shape[0]
    if n % w:
        raise ConfigError(
            f"a global batch of {n} cannot be split evenly over {w} ranks: "
            f"choose a batch size divisible by the number of processes"
        )
    b = n // w
    r = rank()
    return x[r * b : (r + 1) * b]


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's tensor (dim 0); backward: the summed gradient of our rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        r = rank()
        return grad[r * ctx.rows : (r + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All rows of ``x`` from every rank, in rank order, differentiable; ``x`` in one process.

    Every rank must pass a tensor of the same shape. The gradient that flows back to ``x`` is
    the sum over ranks of the gradient of each rank's loss with respect to these rows, so that
    DDP's gradient averaging yields the gradient of the mean of the ranks' losses.
    """
    if world_size() == 1:
        return x
    return _AllGather.apply(x)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.contiguous().clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, in rank order (no gradient): a streamed batch's slices (each rank
    decoded its own) put back together into the global batch; ``x`` in one process."""
    if not is_initialized() or world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (picklable Python objects); ``[obj]`` in one process."""
    if not is_initialized() or world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, differentiable (the gradient is summed over ranks too)."""
    if world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average of a (detached) tensor over ranks, for logging and divergence checks."""
    if world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


def max_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of a (detached) tensor over ranks."""
    if world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX)
    return y


# ---------------------------------------------------------------------------------- batch norm
class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the global batch; works on gloo (CPU) too.

    ``torch.nn.SyncBatchNorm`` only runs on accelerators; this one computes the global mean and
    the global (two-pass) variance with two differentiable all-reduces. Evaluation mode and
    single-process runs behave exactly like ``nn.BatchNorm*d``. State dict keys are the same as
    those of the module it replaces, so checkpoints load into plain batch norm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.full((1,), float(x.numel() // c), device=x.device)
        tot = all_reduce_sum(torch.cat([xf.sum(dims), count]))
        n = tot[-1]
        mean = tot[:-1] / n
        xc = xf - mean.view(shape)
        var = all_reduce_sum((xc * xc).sum(dims)) / n  # biased, as batch norm normalises with
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            tracked, running_var = self.num_batches_tracked, self.running_var
            assert tracked is not None and running_var is not None  # allocated with running_mean
            with torch.no_grad():
                tracked.add_(1)
                m = (1.0 / float(tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` under ``module`` by a synchronised one (in place).

    The same parameter and buffer objects are kept (optimisers and EMA targets stay valid).
    On CUDA torch's own ``SyncBatchNorm`` (fused kernels) is used, elsewhere :class:`SyncBatchNorm`.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (SyncBatchNorm, nn.SyncBatchNorm)
        ):
            on_cuda = any(t.is_cuda for t in list(child.parameters()) + list(child.buffers()))
            cls = nn.SyncBatchNorm if on_cuda else SyncBatchNorm
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            setattr(module, name, adopt_batchnorm_state(new, child))
        else:
            convert_sync_batchnorm(child)
    return module


__all__ = [
    "is_initialized",
    "world_size",
    "rank",
    "is_main",
    "init_from_env",
    "local_rank",
    "local_device",
    "barrier",
    "shard",
    "gather",
    "all_reduce_sum",
    "mean_over_ranks",
    "max_over_ranks",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
]
