"""The five ``--encoder`` SPEC forms on Fashion-MNIST with every evaluator, beside pixels and
random-init, in one leaderboard (issue #29's done-when), plus lightly's own k-NN on the same
features of the lightly-trained encoder.

    OMP_NUM_THREADS=1 SSL_BENCH_THREADS=1 .venv/bin/python scripts/external_encoders.py --out /tmp/ext-board \
        [--steps 40] [--size 32]

(one thread: on a loaded 2-core machine, two threads per process ran 5-10x slower than one.)

What it builds (offline, nothing downloaded), under ``OUT/files``:

1. a lightly SimCLR (torchvision ResNet-18 backbone, lightly's projection head and NT-Xent loss)
   trained ``--steps`` steps on Fashion-MNIST training images with ssl-bench's default image
   views, saved as a Lightning-style ``.ckpt``: ``--encoder torchvision:resnet18 --weights
   simclr.ckpt --strip-prefix model.backbone.``;
2. ``timm:resnet18`` with a state dict saved from timm (a seeded random init: the file form);
3. ``hf:OUT/files/tiny-vit``: a transformers ViT (4 layers, width 192, patch 4, 32 px) saved with
   ``save_pretrained`` (random init);
4. ``torchvision:resnet18`` (random init, no weights file);
5. ``encoders:small_cnn`` from ``examples/encoders.py`` (a factory; random init).

Each is evaluated with ``ssl-bench eval --encoder`` and every evaluator under the smoke preset
(2,048 labelled training and 1,000 test images, seeded; LiDAR and reconstruction on their smoke
budgets), resized to ``--size``; then the pixels and random-init rows of the same split, and
``ssl-bench leaderboard``. Prints the leaderboard and the two k-NN numbers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def adapt(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    x = F.interpolate(x.expand(-1, 3, -1, -1), size=(size, size), mode="bilinear", align_corners=False)
    m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    return (x - m) / s


def train_lightly(path: Path, steps: int, size: int) -> None:
    """A lightly SimCLR on a torchvision ResNet-18, trained ``steps`` steps, saved Lightning-style."""
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from ssl_bench.datasets import load_dataset
    from ssl_bench.views import default_augment

    torch.manual_seed(0)
    backbone = torchvision.models.resnet18(weights=None)
    backbone.fc = nn.Identity()
    model = nn.ModuleDict({"backbone": backbone, "projection_head": SimCLRProjectionHead(512, 512, 128)})
    x = load_dataset("fashion-mnist").x_train
    aug, g = default_augment("image"), torch.Generator().manual_seed(0)
    loss_fn = NTXentLoss(temperature=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(x), (128,), generator=g)
        xb = x[idx].float() / 255.0
        z1, z2 = (model["projection_head"](model["backbone"](adapt(aug(xb, g), size))) for _ in range(2))
        loss = loss_fn(z1, z2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"lightly simclr step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 0, "global_step": steps, "pytorch-lightning_version": "2.4.0", "state_dict": state}, path)


def build_files(files: Path, steps: int, size: int) -> None:
    import timm
    from transformers import ViTConfig, ViTModel

    files.mkdir(parents=True, exist_ok=True)
    if not (files / "simclr.ckpt").is_file():
        train_lightly(files / "simclr.ckpt", steps, size)
    torch.manual_seed(1)
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), files / "timm-resnet18-seed1.pth")
    torch.manual_seed(0)
    cfg = ViTConfig(
        image_size=size,
        patch_size=4,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
    )
    ViTModel(cfg).save_pretrained(files / "tiny-vit")


def ssl_bench(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(Path(sys.executable).parent / "ssl-bench"), *args]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    print(f"({time.perf_counter() - t0:.0f}s)", flush=True)


def lightly_knn(out: Path) -> None:
    """lightly's knn_predict on the cached features of the lightly-trained encoder, same k and T."""
    import json

    import numpy as np
    import torch.nn.functional as F
    from lightly.utils.benchmarking import knn_predict

    for f in sorted(out.glob("*/results.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        top1 = [r for r in rows if r["evaluator"] == "knn" and r["metric"] == "top1"]
        if not top1 or (top1[-1].get("encoder") or {}).get("weights") != "simclr.ckpt":
            continue
        k, t = top1[-1]["eval_options"]["k"], top1[-1]["eval_options"]["temperature"]
        z = np.load(next((f.parent / "embeddings").glob("*.npz")))
        bank = F.normalize(torch.from_numpy(z["train_x"]), dim=1)
        pred = knn_predict(
            F.normalize(torch.from_numpy(z["test_x"]), dim=1), bank.T, torch.from_numpy(z["train_y"]), 10, k, t
        )
        theirs = 100.0 * float((pred[:, 0] == torch.from_numpy(z["test_y"])).float().mean())
        print(
            f"lightly-trained encoder k-NN top-1 (k={k}, T={t}): "
            f"ssl-bench {top1[-1]['value']:.2f}, lightly {theirs:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=40, help="lightly SimCLR training steps (batch 128)")
    ap.add_argument("--size", type=int, default=32, help="input size of the ResNets and the ViT")
    a = ap.parse_args()
    files, runs = a.out / "files", a.out / "runs"
    build_files(files, a.steps, a.size)
    common = ["--dataset", "fashion-mnist", "--preset", "smoke", "--evaluators", "all", "--out", str(runs)]
    size = ["--input-size", str(a.size)]
    ssl_bench("eval", "--encoder", "torchvision:resnet18", "--weights", str(files / "simclr.ckpt"),
              "--strip-prefix", "model.backbone.", *size, *common)  # fmt: skip
    ssl_bench("eval", "--encoder", "timm:resnet18", "--weights", str(files / "timm-resnet18-seed1.pth"), *size, *common)
    ssl_bench("eval", "--encoder", f"hf:{files / 'tiny-vit'}", *common)
    ssl_bench("eval", "--encoder", "torchvision:resnet18", *size, *common)
    ssl_bench("eval", "--encoder", "encoders:small_cnn", *common)
    from ssl_bench.build import load_data
    from ssl_bench.config import RunConfig
    from ssl_bench.pipeline import evaluate_baselines

    cfg = RunConfig(dataset="fashion-mnist", preset="smoke", progress=False)
    t0 = time.perf_counter()
    evaluate_baselines(cfg, runs, load_data(cfg), ["all"])
    print(f"pixels and random-init baselines ({time.perf_counter() - t0:.0f}s)", flush=True)
    ssl_bench("leaderboard", "--runs", str(runs), "--out", str(a.out / "leaderboards"))
    print((a.out / "leaderboards" / "fashion-mnist.md").read_text())
    lightly_knn(runs)


if __name__ == "__main__":
    main()
