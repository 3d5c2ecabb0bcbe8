"""SSL step throughput vs the model-only ceiling: how close ssl-bench's training step gets to the
speed of the bare network on the same batch.

    # on a GPU (bf16 autocast, channels_last; add --compile for torch.compile)
    python benchmarks/bench_gpu_step.py --device cuda --batch-size 256 --img-size 224
    # on a CPU, tiny sizes, to prove it runs
    python benchmarks/bench_gpu_step.py --device cpu --batch-size 8 --img-size 32 --steps 3 --warmup 1

Both measurements use the same timm ResNet-18 + the method's projector, the same optimiser
(AdamW), the same 2 x B images per step, bf16 autocast and channels_last on CUDA:

* ``ssl step``: what ``ssl_bench.trainer.train`` does per step: index a batch of uint8 images
  already on the device, generate the views on the device, normalise, forward through
  ``method.training_step`` (SimCLR's InfoNCE by default), backward, optimiser step,
  ``on_step_end``; no host-device synchronisation inside the loop;
* ``ceiling``: forward of the two (pre-made, fixed) view batches through backbone + projector,
  ``mean()`` as the loss, backward, optimiser step: no augmentation and no loss work.

Prints img/s (source images, B per step) of both and the ratio ssl / ceiling.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from ssl_bench.backbones import build_backbone
from ssl_bench.method import DataSpec
from ssl_bench.registry import METHODS
from ssl_bench.views import view_generator


def _timed(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--method", default="simclr")
    p.add_argument("--backbone", default="timm:resnet18")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the forward of both")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args(argv)

    device = torch.device(a.device)
    torch.manual_seed(0)
    spec = DataSpec(kind="image", input_shape=(3, a.img_size, a.img_size), num_train=a.batch_size * 4)
    backbone = build_backbone(a.backbone, spec.input_shape, "image")
    method = METHODS.get(a.method)(backbone, {}, spec).to(device)
    channels_last = device.type == "cuda" and not a.no_channels_last
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    views = method.make_views(spec, {})
    opt = torch.optim.AdamW([q for q in method.parameters() if q.requires_grad], lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    mean = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1)
    inv_std = 1 / torch.tensor([0.25, 0.25, 0.25], device=device).view(1, 3, 1, 1)

    # a pool of uint8 images on the device, as the trainer keeps the training set
    g = torch.Generator(device="cpu").manual_seed(0)
    pool = torch.randint(0, 256, (4 * a.batch_size, 3, a.img_size, a.img_size), generator=g,
                         dtype=torch.uint8).to(device)
    perm = torch.randperm(len(pool), generator=g).to(device)
    state = {"step": 0}

    def forward_ssl(vs):
        return method.training_step(vs)

    def forward_model(vs):
        return sum(method.projector(method.backbone(v)).float().mean() for v in vs)

    if a.compile:
        forward_ssl, forward_model = torch.compile(forward_ssl), torch.compile(forward_model)

    def ssl_step():
        i = state["step"] % 4
        xb = pool[perm[i * a.batch_size:(i + 1) * a.batch_size]].float().div_(255)
        g = view_generator(0, state["step"], device)
        vs = [((v - mean) * inv_std).contiguous(memory_format=fmt) for v in views(xb, g)]
        with autocast:
            loss, _ = forward_ssl(vs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        method.on_step_end(min(1.0, state["step"] / 1000))

    fixed = [((v - mean) * inv_std).contiguous(memory_format=fmt)
             for v in views(pool[:a.batch_size].float() / 255, view_generator(0, 0, device))]

    def model_step():
        with autocast:
            loss = forward_model(fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_ssl = _timed(ssl_step, a.steps, a.warmup, device)
    t_model = _timed(model_step, a.steps, a.warmup, device)
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "method": a.method, "backbone": a.backbone, "batch_size": a.batch_size, "img_size": a.img_size,
        "steps": a.steps, "compile": a.compile, "channels_last": channels_last,
        "bf16": device.type == "cuda", "torch": torch.__version__,
        "ssl_img_s": a.steps * a.batch_size / t_ssl, "ceiling_img_s": a.steps * a.batch_size / t_model,
    }
    res["ratio"] = res["ssl_img_s"] / res["ceiling_img_s"]
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{res['device']}: {a.method} {a.backbone} B={a.batch_size} {a.img_size}px "
              f"compile={a.compile} channels_last={channels_last} bf16={res['bf16']}")
        print(f"  ssl step : {res['ssl_img_s']:9.1f} img/s")
        print(f"  ceiling  : {res['ceiling_img_s']:9.1f} img/s (backbone + projector fwd/bwd/AdamW, same 2 x B views)")
        print(f"  ratio    : {res['ratio']:.3f}")
    return res


if __name__ == "__main__":
    main()
