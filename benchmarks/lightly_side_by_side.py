"""SimCLR, BYOL and VICReg: ssl-bench's harness vs lightly, same work, interleaved in one run.

Both sides train the same backbone (``ssl_bench.backbones.SmallCNN``, same seeded init) on the
same Fashion-MNIST subset, batch size, number of steps, optimiser (AdamW, lr 2e-3, wd 1e-4, no
decay on 1-D params) and warm-up + cosine schedule, with the same augmentation recipe (random
resized crop scale 0.3-1, flip 0.5, brightness/contrast 0.4 with p 0.8, channel normalisation).

* ssl-bench: ``ssl_bench.trainer.train`` exactly as ``ssl-bench run`` calls it (batched tensor
  views, data held as a uint8 tensor); time = the harness's own ``train_seconds`` (the epoch
  loop, checkpoint writing excluded).
* lightly, as its users write it: lightly's losses, heads and ``MultiViewTransform`` over
  per-image torchvision transforms (PIL), a ``torch.utils.data.DataLoader`` with ``--workers``
  worker processes; time = the same loop (iterator creation to last optimiser step).

img/s counts source images (batch size per step), not views. k-NN: our ``knn`` evaluator
(k=20, T=0.07, cosine) on backbone embeddings of a fixed eval subset (``--eval-train`` /
``--eval-test``, seed 1), computed identically for both sides. Runs alternate which side goes
first; ratios are medians over ``--repeats``.

    .venv/bin/python benchmarks/lightly_side_by_side.py --steps 40 --repeats 3 --workers 2
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssl_bench.backbones import SmallCNN
from ssl_bench.config import RunConfig
from ssl_bench.datasets import Data, load_dataset
from ssl_bench.embeddings import embed_tensor, load_method_from_checkpoint
from ssl_bench.evaluators.knn import knn_accuracy
from ssl_bench.optim import make_optimizer, warmup_cosine
from ssl_bench.trainer import train

METHODS = ("simclr", "byol", "vicreg")
LR, WD, WARMUP, SEED = 2e-3, 1e-4, 0.1, 0


# ------------------------------------------------------------------------------ lightly side
class _PILDataset(torch.utils.data.Dataset):
    """uint8 (N, 1, H, W) tensor -> (transform(PIL image), label): what a torchvision dataset does."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x.numpy(), y.numpy(), transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i, 0], mode="L")), int(self.y[i])


def lightly_transform(data: Data):
    import torchvision.transforms as T
    from lightly.transforms.multi_view_transform import MultiViewTransform

    h = data.input_shape[1]
    view = T.Compose([
        T.RandomResizedCrop(h, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
        T.ToTensor(),
        T.Normalize(data.mean, data.std),
    ])
    return MultiViewTransform([view, view])


class LightlySimCLR(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import SimCLRProjectionHead

        self.backbone = backbone
        self.head = SimCLRProjectionHead(backbone.out_dim, 512, 128)
        self.criterion = NTXentLoss(temperature=0.1)

    def step(self, x0, x1, progress):
        return self.criterion(self.head(self.backbone(x0)), self.head(self.backbone(x1)))


class LightlyBYOL(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(backbone.out_dim, 512, 128)
        self.prediction_head = BYOLPredictionHead(128, 512, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def step(self, x0, x1, progress):
        from lightly.models.utils import update_momentum

        # lightly's examples update the EMA before the forward, with a cosine momentum schedule
        m = 0.99 + (1 - 0.99) * (1 - np.cos(np.pi * progress)) / 2
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        p1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        with torch.no_grad():
            z0 = self.projection_head_momentum(self.backbone_momentum(x0)).detach()
            z1 = self.projection_head_momentum(self.backbone_momentum(x1)).detach()
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


class LightlyVICReg(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.backbone = backbone
        self.projection_head = VICRegProjectionHead(backbone.out_dim, 512, 512, num_layers=3)
        self.criterion = VICRegLoss()

    def step(self, x0, x1, progress):
        return self.criterion(self.projection_head(self.backbone(x0)), self.projection_head(self.backbone(x1)))


LIGHTLY = {"simclr": LightlySimCLR, "byol": LightlyBYOL, "vicreg": LightlyVICReg}


def run_lightly(method: str, train_data: Data, steps: int, batch: int, workers: int):
    torch.manual_seed(SEED)
    model = LIGHTLY[method](SmallCNN(in_channels=train_data.input_shape[0]))
    model.train()
    opt = make_optimizer("adamw", model, LR, WD)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, WARMUP))
    ds = _PILDataset(train_data.x_train, train_data.y_train, lightly_transform(train_data))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(SEED))
    done, wait = 0, 0.0
    t0 = time.perf_counter()
    it = iter(loader)
    while done < steps:
        tw = time.perf_counter()
        (x0, x1), _ = next(it)
        wait += time.perf_counter() - tw  # the main process idles on the DataLoader
        loss = model.step(x0, x1, done / steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done += 1
    seconds = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise SystemExit(f"lightly {method}: loss {float(loss)}")
    return model.backbone.eval(), seconds, wait


# ----------------------------------------------------------------------------- ssl-bench side
def run_ours(method: str, full: Data, steps: int, batch: int, threads: int):
    cfg = RunConfig(method=method, dataset="fashion-mnist", backbone="cnn-small", preset="quick", seed=SEED, epochs=1,
                    batch_size=batch, train_subset=steps * batch, optimizer="adamw", lr=LR, weight_decay=WD,
                    warmup_frac=WARMUP, device="cpu", num_threads=threads, progress=False, knn_monitor_every=0)
    with tempfile.TemporaryDirectory() as out:
        res = train(cfg, out, data=full)
        m, _, _ = load_method_from_checkpoint(res.checkpoint, torch.device("cpu"))
    return m.backbone.eval(), res.train_seconds


def knn_top1(backbone, ev: Data) -> float:
    dev = torch.device("cpu")
    tr = embed_tensor(backbone, ev, ev.x_train, dev)
    te = embed_tensor(backbone, ev, ev.x_test, dev)
    return knn_accuracy(tr, ev.y_train.numpy(), te, ev.y_test.numpy(), k=20, temperature=0.07)["top1"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for lightly")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    ap.add_argument("--eval-train", type=int, default=10_000)
    ap.add_argument("--eval-test", type=int, default=2_000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    full = load_dataset("fashion-mnist")
    train_data = full.subset(a.steps * a.batch_size, None, seed=0)  # the subset train() takes
    ev = full.subset(a.eval_train, a.eval_test, seed=1)
    torch.manual_seed(SEED)
    init_knn = knn_top1(SmallCNN(in_channels=1).eval(), ev)
    print(f"# load before: {os.getloadavg()}  torch threads {a.threads}, lightly DataLoader workers {a.workers}")
    print(f"# k-NN top-1 of the randomly initialised backbone: {init_knn:.2f}")
    rows = []
    for method in a.methods.split(","):
        for r in range(a.repeats):
            order = ("ours", "lightly") if r % 2 == 0 else ("lightly", "ours")
            for side in order:
                if side == "ours":
                    bb, sec = run_ours(method, full, a.steps, a.batch_size, a.threads)
                    wait = None
                else:
                    bb, sec, wait = run_lightly(method, train_data, a.steps, a.batch_size, a.workers)
                top1 = knn_top1(bb, ev)
                ips = a.steps * a.batch_size / sec
                rows.append(dict(method=method, side=side, repeat=r, seconds=sec, img_per_s=ips, knn_top1=top1,
                                 data_wait_s=wait, load1=os.getloadavg()[0]))
                w = f"  waiting on DataLoader {wait:5.2f} s" if wait is not None else ""
                print(f"{method:>7} r{r} {side:>7}: {ips:8.1f} img/s  ({sec:6.2f} s)  k-NN top-1 {top1:6.2f}  "
                      f"load {os.getloadavg()[0]:.2f}{w}", flush=True)
    print(f"# load after: {os.getloadavg()}")
    print("\n| method | ssl-bench img/s | lightly img/s | ratio (median of per-repeat ratios) | "
          "ssl-bench k-NN top-1 | lightly k-NN top-1 |")
    print("|---|---|---|---|---|---|")
    summary = []
    for method in a.methods.split(","):
        o = [x for x in rows if x["method"] == method and x["side"] == "ours"]
        li = [x for x in rows if x["method"] == method and x["side"] == "lightly"]
        ratios = [x["img_per_s"] / y["img_per_s"] for x, y in zip(o, li)]
        s = dict(method=method, ours_ips=statistics.median(x["img_per_s"] for x in o),
                 lightly_ips=statistics.median(x["img_per_s"] for x in li), ratio=statistics.median(ratios),
                 ratios=ratios, ours_knn=statistics.median(x["knn_top1"] for x in o),
                 lightly_knn=statistics.median(x["knn_top1"] for x in li))
        summary.append(s)
        print(f"| {method} | {s['ours_ips']:.0f} | {s['lightly_ips']:.0f} | {s['ratio']:.2f}x "
              f"({', '.join(f'{v:.2f}' for v in ratios)}) | {s['ours_knn']:.2f} | {s['lightly_knn']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(args=vars(a), init_knn=init_knn, rows=rows, summary=summary,
                                                argv=sys.argv), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
