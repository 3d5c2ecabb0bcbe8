"""The worker of tests/harness/test_distributed.py, started by torchrun (2 processes, gloo):

    python -m torch.distributed.run --nproc-per-node 2 tests/harness/ddp_worker.py OUT RESULTS

It trains the test's configs with the real trainer (which joins the process group torchrun
describes), checks the batch-size error, saves each rank's losses/gradients of the distributed
pieces, then runs the ``run`` command (train + rank-0 evaluation + leaderboard) in-process.
"""
import os
import sys
from pathlib import Path

import torch

from ssl_bench import distributed as dist
from ssl_bench import losses
from ssl_bench.errors import SSLBenchError
from ssl_bench.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import tiny_config  # noqa: E402


def _configs():
    return {
        "simclr-mog2d": tiny_config(method="simclr", optimizer="sgd", epochs=2, train_subset=256),
        "vicreg-mog2d": tiny_config(method="vicreg", optimizer="sgd", epochs=2, train_subset=256),
        "byol-mog2d": tiny_config(method="byol", optimizer="sgd", epochs=2, train_subset=256),
        "simclr-digits": tiny_config(method="simclr", optimizer="sgd", dataset="digits", epochs=1,
                                     batch_size=64, train_subset=128),
    }


def _global_inputs():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    x = torch.randn(8, 3, 5, 5, generator=g) * 2 + 1
    return z1, z2, x


def _bn_weights(x):
    return torch.arange(x.numel()).view_as(x).float().sin()


def _grad_checks() -> dict:
    """Per-rank losses and gradients of the distributed pieces on this rank's rows."""
    z1, z2, x = _global_inputs()
    out = {}
    a, b = dist.shard(z1).clone().requires_grad_(), dist.shard(z2).clone().requires_grad_()
    loss = losses.info_nce(a, b, 0.2)
    loss.backward()
    out["info_nce"] = (loss.detach(), a.grad, b.grad)

    a, b = dist.shard(z1).clone().requires_grad_(), dist.shard(z2).clone().requires_grad_()
    loss = losses.vicreg(dist.gather(a), dist.gather(b))
    loss.backward()
    out["vicreg"] = (loss.detach(), a.grad, b.grad)

    torch.manual_seed(0)
    bn = dist.convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
    xs = dist.shard(x).clone().requires_grad_()
    y = bn(xs)
    (y * dist.shard(_bn_weights(x))).sum().backward()
    out["bn"] = (y.detach(), xs.grad, bn[0].running_mean.clone(), bn[0].running_var.clone())
    return out


RUN_ARGS = ["--methods", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--batch-size", "64",
            "--set", "train_subset=256", "--device", "cpu", "--no-progress", "--no-baselines", "--evaluators", "rankme"]


def main(out: Path, results: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    for name, cfg in _configs().items():  # the trainer joins the group from the environment
        train(cfg, out / name)
    try:  # a global batch that does not split over the ranks: a clear error on every rank
        train(tiny_config(method="simclr", batch_size=63), out / "bad")
        (results / f"bad{rank}.txt").write_text("no error")
    except SSLBenchError as exc:
        (results / f"bad{rank}.txt").write_text(str(exc))
    torch.save(_grad_checks(), results / f"rank{rank}.pt")
    from ssl_bench.cli import main as cli

    code = cli(["run", "--out", str(out / "cli"), "--leaderboards", str(results / "lb"), *RUN_ARGS])
    (results / f"cli{rank}.txt").write_text(str(code))
    torch.distributed.destroy_process_group()


def zoo_config(method: str):
    """Every registered method, 2 SGD steps on digits (global batch 64)."""
    return tiny_config(method=method, optimizer="sgd", dataset="digits", epochs=1, train_subset=128, batch_size=64)


def zoo(out: Path) -> None:
    from ssl_bench.registry import METHODS

    torch.set_num_threads(1)
    for m in sorted(METHODS.names()):
        train(zoo_config(m), out / m)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[3:] == ["zoo"]:
        zoo(Path(sys.argv[1]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
