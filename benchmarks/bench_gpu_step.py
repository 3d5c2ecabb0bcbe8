"""SSL step throughput vs the model-only ceiling: how close ssl-bench's training step gets to the
speed of the bare networks on the same batch, and whether the step synchronises with the device.

    # on a GPU, the project's workload: Fashion-MNIST-sized images, each method's default backbone
    python benchmarks/bench_gpu_step.py --device cuda --methods simclr,byol,vicreg,dino,mae \
        --backbone auto --shape 1,28,28 --batch-size 256 --jsonl runs/steps.jsonl
    # + --compile default (torch.compile) or --compile reduce-overhead (torch.compile with CUDA graphs)
    # the ResNet-18 case
    python benchmarks/bench_gpu_step.py --device cuda --batch-size 256 --shape 3,224,224
    # host-device synchronisations per step instead of timings
    python benchmarks/bench_gpu_step.py --device cuda --methods swav,ijepa --backbone auto --shape 1,28,28 \
        --sync-check 5
    # on a CPU, tiny sizes, to prove it runs
    python benchmarks/bench_gpu_step.py --device cpu --batch-size 8 --shape 3,32,32 --steps 3 --warmup 1

Both timings use the same method instance (backbone + heads), the same optimiser (the harness's
AdamW and its parameter groups), the same B source images per step, the precision and layout the
trainer picks (``precision: auto``: bf16 autocast on CUDA and on CPUs with native bf16; channels_last
for images):

* ``ssl step``: what ``ssl_bench.trainer.train`` does per step: index a batch of uint8 images
  already on the device, generate the views on the device, normalise, set the clock, forward
  through ``method.training_step`` (the method's own loss), backward, the method's frozen
  parameters / gradient clipping / weight-decay schedule, optimiser and LR-schedule step,
  ``on_step_end`` (EMA), the running sums of the logs;
* ``ceiling``: the method's networks only (:data:`CEILINGS`): forward of pre-made, fixed views
  through the networks the method trains (with gradient) and its targets (without), ``mean()``
  as the loss, backward, optimiser step: no augmentation, no masks drawn, no loss work, no EMA.

Prints img/s (source images, B per step) of both and the ratio ssl / ceiling. On a CPU the two
are timed one step of each in turn and each figure is steps x its median step (``--no-interleave``:
all ssl steps, then all ceiling steps, as on a GPU).

``--sync-check N`` runs N steps after the warm-up and counts, per step, the host-device
synchronisations: on CUDA with ``torch.cuda.set_sync_debug_mode("warn")`` (each warning's
Python file:line is reported), and on any device the tensor -> Python conversions (``item``,
``int()``, ...) of device tensors (every tensor on a CPU run, where none of them waits;
AdamW's host-side step counters in torch/optim are not counted).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable

import torch

from ssl_bench import precision
from ssl_bench.backbones import build_backbone
from ssl_bench.build import backbone_choice
from ssl_bench.config import RunConfig
from ssl_bench.heads import forward_by_size, gather_tokens, vit_encode_tokens, vit_patch_tokens
from ssl_bench.method import DataSpec, TrainClock
from ssl_bench.optim import make_optimizer, update_, warmup_cosine
from ssl_bench.registry import METHODS
from ssl_bench.views import random_token_split, view_generator


# -- the model-only ceilings: the method's networks on fixed views, mean() as the loss ------------
def _online(method, views):
    return sum(method.projector(method.backbone(v)).float().mean() for v in views)


def _byol(method, views):
    loss = 0.0
    for v in views:
        z = method.projector(method.backbone(v))
        loss = loss + (method.predictor(z) if method.predictor is not None else z).float().mean()
        with torch.no_grad():
            method.target_projector(method.target_backbone(v))
    return loss


def _dino(method, views):
    loss = method.head(forward_by_size(method.backbone, views)).float().mean()
    with torch.no_grad():  # the teacher sees the two global crops
        method.target_head(method.target_backbone(torch.cat(views[:2])))
    return loss


def _mae(method, views, split):
    x = views[0]
    tokens, grid = vit_patch_tokens(method.vit, x)
    keep, hidden = split  # drawn once, before any compilation (no branch for torch.compile to guard on)
    latent = vit_encode_tokens(method.vit, gather_tokens(tokens, keep))
    return method.decoder(latent, keep, hidden, grid).float().mean()


def _mae_split(method, views):
    with torch.no_grad():
        n_tokens = vit_patch_tokens(method.vit, views[0])[0].shape[1]
    return random_token_split(views[0].shape[0], n_tokens, method.hp.mask_ratio,
                              g=torch.Generator().manual_seed(0), device=views[0].device)


def _moco_v2(method, views):
    loss = _online(method, views)
    with torch.no_grad():  # the key encoder embeds both views
        for v in views:
            method.key_projector(method.key_backbone(v))
    return loss


def _ema_jepa(method, views):
    loss = sum(method.predictor(method.backbone(v)).float().mean() for v in views)
    with torch.no_grad():
        for v in views:
            method.target_backbone(v)
    return loss


def _jepa_masked(method, views):
    x = views[0]  # dense (the image default): the context (masked) view and the full one are one shape
    if method.dense:
        loss = method.predictor(method.backbone.feature_map(x)).float().mean()
        with torch.no_grad():
            method.target_backbone.feature_map(x)
        return loss
    loss = method.predictor(method.backbone(x)).float().mean()
    with torch.no_grad():
        method.target_backbone(views[-1])
    return loss


def _dsm(method, views):
    x = views[0]
    sigma = torch.full((x.shape[0],), 0.5, device=x.device, dtype=x.dtype)
    return method.score(x, sigma).float().mean()


#: method -> ceiling(method, views) -> scalar loss. Methods not listed here fall back to
#: backbone + projector per view (a method without a projector has no ceiling here).
CEILINGS: dict[str, Callable[..., torch.Tensor]] = {
    "byol": _byol, "moco-v3": _byol, "moco-v2": _moco_v2, "ema-jepa": _ema_jepa, "jepa-masked": _jepa_masked,
    "dsm": _dsm, "dino": _dino, "mae": _mae}
#: what a ceiling needs drawn once from the fixed views (passed as its third argument)
CEILING_STATE = {"mae": _mae_split}


def ceiling_fn(name: str, method, fixed_views):
    """``f(views) -> loss``: the method's model-only ceiling, its fixed state drawn now."""
    if name in CEILINGS:
        fn = CEILINGS[name]
        if name in CEILING_STATE:
            state = CEILING_STATE[name](method, fixed_views)
            return lambda views: fn(method, views, state)
        return lambda views: fn(method, views)
    if hasattr(method, "projector"):
        return lambda views: _online(method, views)
    raise ValueError(f"no model-only ceiling defined for {name!r} (add one to CEILINGS)")


# -- host-device synchronisations ------------------------------------------------------------------
#: Tensor -> host conversions: each one waits for the device when the tensor lives there.
CONVERSIONS = ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy")


def count_syncs(step, n: int, device: torch.device) -> dict:
    """Run ``step`` n times; returns syncs per step (CUDA: sync debug mode) and conversions per
    step, each with the Python file:line where they happened (most frequent first)."""
    conv: Counter = Counter()
    origs = {name: getattr(torch.Tensor, name) for name in CONVERSIONS}

    def wrap(name, orig):
        def counted(self, *a, **kw):
            caller = sys._getframe(1).f_code
            if (self.device.type != "cpu" or device.type == "cpu") and "torch/optim/" not in caller.co_filename:
                conv[f"{_short(caller.co_filename)}:{sys._getframe(1).f_lineno} {name}"] += 1
            return orig(self, *a, **kw)
        return counted

    syncs: Counter = Counter()
    try:
        for name, orig in origs.items():
            setattr(torch.Tensor, name, wrap(name, orig))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(n):
                    step()
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
                    torch.cuda.synchronize(device)
        for w in caught:
            if "synchroniz" in str(w.message):
                syncs[f"{_short(w.filename)}:{w.lineno}"] += 1
    finally:
        for name, orig in origs.items():
            setattr(torch.Tensor, name, orig)
    return {
        "sync_debug_mode": device.type == "cuda",
        "syncs_per_step": sum(syncs.values()) / n if device.type == "cuda" else None,
        "sync_sites": dict(syncs.most_common(8)),
        "conversions_per_step": sum(conv.values()) / n,
        "conversion_sites": dict(conv.most_common(8)),
    }


def _short(path: str) -> str:
    """The last two components of a source path (methods/swav.py, ssl_bench/views.py)."""
    return "/".join(path.replace("\\", "/").split("/")[-2:])


# -- one method ----------------------------------------------------------------------------------
def _timed(step, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(warm-up seconds, seconds of ``steps`` steps), the device drained before each clock read."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return t1 - t0, time.perf_counter() - t1


def _interleaved(ssl_step, model_step, steps: int, warmup: int) -> tuple[float, float, float, float]:
    """CPU: one ssl step, one ceiling step, in turn, each timed alone; (warm-up s, steps x the
    median ssl step, warm-up s, steps x the median ceiling step). A load change on a shared
    machine hits both alike, and the median drops the steps it hit hardest."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        ssl_step()
    t1 = time.perf_counter()
    for _ in range(warmup):
        model_step()
    t2 = time.perf_counter()
    ts, tm = [], []
    for _ in range(steps):
        a = time.perf_counter()
        ssl_step()
        b = time.perf_counter()
        model_step()
        ts.append(b - a)
        tm.append(time.perf_counter() - b)
    return t1 - t0, steps * statistics.median(ts), t2 - t1, steps * statistics.median(tm)


def bench_method(name: str, a, device: torch.device) -> dict:
    torch.manual_seed(0)
    shape = tuple(int(s) for s in a.shape.split(","))
    spec = DataSpec(kind="image", input_shape=shape, num_train=a.batch_size * 4)
    cfg = RunConfig(method=name, backbone=a.backbone)
    bb_name, bb_kwargs = backbone_choice(cfg, "image") if a.backbone == "auto" else (a.backbone, {})
    backbone = build_backbone(bb_name, shape, "image", **bb_kwargs)
    method = METHODS.get(name)(backbone, {}, spec).to(device)
    channels_last = precision.wants_channels_last("image", shape) and not a.no_channels_last
    method = precision.model_to_layout(method, channels_last)
    prec = precision.resolve_precision(a.precision, device)
    autocast = precision.autocast(device, prec)
    views = method.make_views(spec, {})
    total = 10_000  # schedule length: EMA and LR schedules at their early values, as in a real run
    method.total_steps = total
    lr = method.optim_defaults.get("lr")
    wd = method.optim_defaults.get("weight_decay")
    opt = make_optimizer("adamw", method, lr, wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, 0.1))
    wd_base = [float(g["weight_decay"]) for g in opt.param_groups]
    wd_end = method.weight_decay_end()
    c = shape[0]
    mean = torch.full((1, c, 1, 1), 0.5, device=device)
    inv_std = torch.full((1, c, 1, 1), 4.0, device=device)

    # a pool of uint8 images on the device, as the trainer keeps the training set
    g = torch.Generator(device="cpu").manual_seed(0)
    pool = torch.randint(0, 256, (4 * a.batch_size, *shape), generator=g, dtype=torch.uint8).to(device)
    perm = torch.randperm(len(pool), generator=g).to(device)
    state = {"step": 0}
    sums: dict[str, torch.Tensor] = {}

    def forward_ssl(vs):
        return method.training_step(vs)

    def norm(v):
        return precision.to_layout((v - mean) * inv_std, channels_last)

    fixed = [norm(v) for v in views(pool[:a.batch_size].float() / 255, view_generator(0, 0, device))]
    # the ceiling is not built for --sync-check: methods without one (swav, ijepa) can be checked
    forward_model = None if a.sync_check else ceiling_fn(name, method, fixed)
    graphs = a.compile == "reduce-overhead"
    if a.compile != "none":
        forward_ssl = torch.compile(forward_ssl, mode=a.compile)
        forward_model = forward_model and torch.compile(forward_model, mode=a.compile)

    def ssl_step():
        if graphs:  # outputs of the previous replay may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        i, step = state["step"] % 4, state["step"]
        xb = pool[perm[i * a.batch_size:(i + 1) * a.batch_size]].float().div_(255)
        vs = [norm(v) for v in views(xb, view_generator(0, step, device))]
        method.clock = TrainClock(step, 100, total)
        with autocast:
            loss, logs = forward_ssl(vs)
        update_(method, opt, sched, loss, step, total, wd_base, wd_end)
        state["step"] += 1
        for k, v in {"loss": loss.detach(), **logs}.items():
            v = torch.as_tensor(v, device=device).detach().float()
            sums[k] = sums[k] + v if k in sums else v.clone()

    def model_step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss = forward_model(fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "method": name, "backbone": bb_name, "shape": list(shape), "batch_size": a.batch_size,
        "views": [list(v.shape[1:]) for v in fixed], "compile": a.compile, "channels_last": channels_last,
        "precision": prec, "torch": torch.__version__,
    }
    if a.sync_check:
        for _ in range(a.warmup):
            ssl_step()
        res.update(kind="sync_check", steps=a.sync_check, **count_syncs(ssl_step, a.sync_check, device))
        return res
    if device.type == "cpu" and not a.no_interleave:
        w_ssl, t_ssl, w_model, t_model = _interleaved(ssl_step, model_step, a.steps, a.warmup)
    else:
        w_ssl, t_ssl = _timed(ssl_step, a.steps, a.warmup, device)
        w_model, t_model = _timed(model_step, a.steps, a.warmup, device)
    res.update(kind="throughput", steps=a.steps, warmup=a.warmup, warmup_s=round(w_ssl + w_model, 3),
               ssl_ms_per_step=1000 * t_ssl / a.steps, ceiling_ms_per_step=1000 * t_model / a.steps,
               ssl_img_s=a.steps * a.batch_size / t_ssl, ceiling_img_s=a.steps * a.batch_size / t_model)
    res["ratio"] = res["ssl_img_s"] / res["ceiling_img_s"]
    if device.type == "cuda":
        res["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return res


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--method", "--methods", dest="methods", default="simclr", help="comma-separated")
    p.add_argument("--backbone", default="timm:resnet18", help="a backbone name, or auto: each method's default")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--shape", default=None, help="C,H,W of the images (default 3,IMG,IMG)")
    p.add_argument("--img-size", type=int, default=224, help="H = W of 3-channel images when --shape is not given")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", nargs="?", const="default", default="none",
                   choices=["none", "default", "reduce-overhead", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode of both forwards (bare --compile: default; reduce-overhead: CUDA graphs)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--no-interleave", action="store_true",
                   help="CPU: time all ssl steps, then all ceiling steps (default: one of each in turn, medians)")
    p.add_argument("--sync-check", type=int, default=0, metavar="N",
                   help="count host-device syncs over N steps instead of timing")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON line per method")
    p.add_argument("--jsonl", default=None, help="append one JSON line per method to this file, as each finishes")
    a = p.parse_args(argv)
    if a.shape is None:
        a.shape = f"3,{a.img_size},{a.img_size}"
    if a.threads:
        torch.set_num_threads(a.threads)

    device = torch.device(a.device)
    out = []
    for name in [m.strip() for m in a.methods.split(",") if m.strip()]:
        t0 = time.perf_counter()
        try:
            res = bench_method(name, a, device)
        except Exception as exc:  # one method's failure (e.g. CUDA graphs) is a result, not the end
            res = {"method": name, "compile": a.compile, "kind": "sync_check" if a.sync_check else "throughput",
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]}
            traceback.print_exc()
        res["seconds"] = round(time.perf_counter() - t0, 3)
        out.append(res)
        if a.jsonl:
            with open(a.jsonl, "a") as f:
                f.write(json.dumps(res) + "\n")
        if a.json:
            print(json.dumps(res), flush=True)
        elif "error" in res:
            print(f"{name}: {res['error']}", flush=True)
        elif a.sync_check:
            print(f"{res['device']}: {name} {res['backbone']} B={a.batch_size} {a.shape}: "
                  f"syncs/step={res['syncs_per_step']} conversions/step={res['conversions_per_step']:.2f} "
                  f"sites={res['sync_sites'] or res['conversion_sites']}", flush=True)
        else:
            print(f"{res['device']}: {name} {res['backbone']} B={a.batch_size} {a.shape} compile={a.compile} "
                  f"channels_last={res['channels_last']} {res['precision']}", flush=True)
            print(f"  ssl step : {res['ssl_img_s']:9.1f} img/s", flush=True)
            print(f"  ceiling  : {res['ceiling_img_s']:9.1f} img/s (the method's networks fwd/bwd/AdamW, same views)",
                  flush=True)
            print(f"  ratio    : {res['ratio']:.3f}", flush=True)
    return out


if __name__ == "__main__":
    main()
