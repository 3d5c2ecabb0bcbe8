"""One training step of every registered method, as the trainer takes it, for the DDP gradient check
of tests/harness/test_distributed.py.

:func:`step_grads` builds a method (seeded), draws the same tiny global batch and views on every
rank, keeps this rank's slice (:func:`ssl_bench.distributed.shard`), runs the forward through
DistributedDataParallel when a process group is up (synchronised batch norm as the trainer
converts it) and returns every parameter's gradient after the backward: DDP's average over the
ranks, which must equal the one-process gradient of the same global batch.

Run as ``torchrun --nproc-per-node 2 tests/harness/ddp_zoo.py OUT.pt``: rank 0 saves
``{case: {parameter: gradient}}`` for :func:`cases`.
"""

import inspect
import sys
from pathlib import Path

import torch

from ssl_bench import distributed as dist
from ssl_bench.build import build_method, data_spec, load_data, seed_everything, train_split
from ssl_bench.method import TrainClock
from ssl_bench.registry import METHODS
from ssl_bench.views import view_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import tiny_config  # noqa: E402

GLOBAL_BATCH = 16  # 8 rows per rank on two processes
# as the trainer: batch norm statistics are synchronised by the layers, no buffer broadcast per forward
# (older torch names the keyword broadcast_buffers)
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def cases() -> dict:
    """Every method of the zoo on digits (8x8 images, the CNN) and, where it trains on vectors, on
    mog2d (MLP); methods that other tests register in the same process are not the zoo's."""
    out = {}
    for m in sorted(n for n in METHODS.names() if METHODS.get(n).__module__.startswith("ssl_bench.methods.")):
        out[f"{m}/digits"] = tiny_config(method=m, dataset="digits", batch_size=GLOBAL_BATCH, train_subset=64)
        if METHODS.get(m).supports("vector"):
            out[f"{m}/mog2d"] = tiny_config(method=m, dataset="mog2d", batch_size=GLOBAL_BATCH, train_subset=64)
    return out


def step_grads(cfg, data_cache: dict) -> dict[str, torch.Tensor]:
    """The gradients of one training step at step 0 of a one-step run."""
    cfg = cfg.with_preset()
    if cfg.dataset not in data_cache:
        data_cache[cfg.dataset] = train_split(cfg, load_data(cfg))
    data = data_cache[cfg.dataset]
    seed_everything(cfg.seed)
    method = build_method(cfg, data_spec(data))
    method.total_steps = 1
    views = method.make_views(data_spec(data), cfg.views)
    module: torch.nn.Module = _Step(method)
    if dist.world_size() > 1:
        if method.sync_batchnorm:
            dist.convert_sync_batchnorm(method)
        module = torch.nn.parallel.DistributedDataParallel(
            module, find_unused_parameters=bool(method.ddp_find_unused_parameters), **_NO_BUFFER_SYNC
        )
    xb = data.to_float(data.pretrain[:GLOBAL_BATCH])
    normalize = data.normalizer(torch.device("cpu"))
    vs = [normalize(dist.shard(v)) for v in views(xb, view_generator(cfg.seed, 0, "cpu"))]
    method.clock = TrainClock(0, 1, 1, cfg.seed)
    loss, _ = module(vs)
    loss.backward()
    return {k: p.grad.detach().clone() for k, p in method.named_parameters() if p.grad is not None}


class _Step(torch.nn.Module):
    def __init__(self, method) -> None:
        super().__init__()
        self.method = method

    def forward(self, views):
        return self.method.training_step(views)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    cache: dict = {}
    grads = {name: step_grads(cfg, cache) for name, cfg in cases().items()}
    if dist.is_main():
        torch.save(grads, out)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
