"""Conformance suite: every registered method (built-in or entry point) against the contract.

For each method, on tiny data (``mog2d`` when the method runs on vectors, else ``digits``):
one training step runs on the CPU, the loss and logs are finite, gradients reach the encoder,
``encode`` gives ``(B, out_dim)``; through the trainer, two runs with one seed log identical
losses and weights, and the checkpoint round-trips: ``encode`` of the method rebuilt from the
backbone-only checkpoint equals ``encode`` of the full trained method (heads included) restored
from the resume state. The example third-party package under ``examples/`` is registered through
the ``ssl_bench.methods`` entry-point group and put through the same checks.
"""
import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from ssl_bench.checkpoint import load_resume, read_encoder
from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.embeddings import load_method_from_checkpoint
from ssl_bench.errors import ConfigError
from ssl_bench.precision import model_to_layout, wants_channels_last
from ssl_bench.registry import METHODS
from ssl_bench.trainer import build_method, data_spec, seed_everything, train
from ssl_bench.views import view_generator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ssl-bench-example-plugin"
CPU = torch.device("cpu")
_DATA: dict = {}


def data(name):
    if name not in _DATA:
        _DATA[name] = load_dataset(name)
    return _DATA[name]


def tiny_cfg(method, dataset):
    return RunConfig(method=method, dataset=dataset, preset="smoke", epochs=1, batch_size=32, train_subset=96,
                     eval_train_subset=64, eval_test_subset=32, progress=False, device="cpu", log_every=1)


def dataset_for(method):
    """mog2d when the method declares vector data (``data_kinds``), else digits (8x8 images): every
    check below then holds the declaration to its word."""
    kinds = METHODS.get(method).data_kinds
    assert kinds and set(kinds) <= {"image", "vector"}, (method, kinds)
    return "mog2d" if "vector" in kinds else "digits"


def batch(d, n=32, split="train"):
    x = d.x_train[:n] if split == "train" else d.x_test[:n]
    return d.to_float(x)


# ------------------------------------------------------------------------------------ checks
def check_training_step(method):
    ds = dataset_for(method)
    d = data(ds)
    cfg = tiny_cfg(method, ds)
    spec = data_spec(d)
    seed_everything(0)
    m = build_method(cfg, spec).train()
    views = m.make_views(spec, cfg.views)
    vs = [d.normalize(v) for v in views(batch(d), view_generator(0, 0, CPU))]
    loss, logs = m.training_step(vs)
    assert loss.dim() == 0 and torch.isfinite(loss), f"{method}: loss {loss}"
    for k, v in logs.items():
        assert torch.isfinite(torch.as_tensor(v)).all(), f"{method}: log {k} = {v}"
    loss.backward()
    grads = [p.grad for p in m.backbone.parameters() if p.requires_grad]
    assert grads, f"{method}: the backbone has no trainable parameters"
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    reached = sum(float(g.abs().sum()) for g in grads if g is not None)
    assert reached > 0, f"{method}: no gradient reaches the encoder"
    m.on_step_end(0.5)
    with torch.no_grad():
        z = m.eval().encode(d.normalize(batch(d, 16, "test")))
    assert z.shape == (16, m.out_dim) and torch.isfinite(z).all()


def meta_of(path):
    return read_encoder(path)[1]


def _losses(run_dir):
    rows = (run_dir / "train_log.csv").read_text().splitlines()
    col = rows[0].split(",").index("loss")
    return [r.split(",")[col] for r in rows[1:]]


def check_determinism_and_roundtrip(method, tmp_path):
    ds = dataset_for(method)
    d = data(ds)
    cfg = tiny_cfg(method, ds)
    a = train(cfg, tmp_path / "a", data=d)
    b = train(cfg, tmp_path / "b", data=d)
    la, lb = _losses(a.run_dir), _losses(b.run_dir)
    assert la == lb and all(torch.isfinite(torch.tensor(float(v))) for v in la), (la, lb)
    wa, wb = read_encoder(a.checkpoint)[0], read_encoder(b.checkpoint)[0]
    assert all(torch.equal(v, wb[k]) for k, v in wa.items())

    # the full trained method (heads, targets, queues) from the resume state ...
    full = build_method(cfg.with_preset(), data_spec(d))
    full.load_state_dict(load_resume(a.run_dir / "checkpoints" / "resume.pt")["method"])
    # the checkpoint holds the network the paper evaluates (DINO's teacher, I-JEPA's target)
    assert meta_of(a.checkpoint)["evaluated"] == full.evaluated
    assert all(torch.equal(v, wa[k]) for k, v in full.evaluated_backbone().state_dict().items())
    full.backbone.load_state_dict(full.evaluated_backbone().state_dict())
    # ... and the method rebuilt from the backbone-only checkpoint encode identically
    reloaded, rcfg, meta = load_method_from_checkpoint(a.checkpoint, CPU)
    assert meta["method"] == method and rcfg.method == method
    # the same memory layout as the reloaded one (channels_last for images): bitwise comparable
    full = model_to_layout(full, wants_channels_last(d.kind, d.input_shape))
    x = d.normalize(batch(d, 16, "test"))
    with torch.no_grad():
        assert torch.equal(full.eval().encode(x), reloaded.encode(x)), f"{method}: encode changed after reload"


# --------------------------------------------------------------------- every registered method
ALL = METHODS.names()


def test_the_zoo_is_registered():
    zoo = {"simclr", "moco-v2", "moco-v3", "siamese-margin", "contrastive-jea", "byol", "simsiam", "ema-jepa",
           "dino", "barlow-twins", "vicreg", "lejepa", "swav", "jepa", "jepa-pairwise", "jepa-masked", "ijepa",
           "mae", "dsm"}
    assert zoo <= set(ALL), sorted(zoo - set(ALL))


@pytest.mark.parametrize("method", ALL)
def test_training_step(method):
    check_training_step(method)


@pytest.mark.parametrize("method", ALL)
def test_determinism_and_checkpoint_roundtrip(method, tmp_path):
    check_determinism_and_roundtrip(method, tmp_path)


@pytest.mark.parametrize("method", ALL)
def test_docstring_reference_and_defaults(method):
    cls = METHODS.get(method)
    doc = cls.__doc__ or sys.modules[cls.__module__].__doc__ or ""
    assert re.search(r"(19|20)\d\d", doc), f"{method}: its docstring names no paper (year)"
    assert cls.resolve_hparams({}) == dict(cls.defaults)
    for k, v in cls.defaults.items():  # every option is a plain config value
        assert isinstance(v, (bool, int, float, str)), (method, k, v)
    # the trainer reads these two keys and no other (the optimiser is the config's)
    assert set(cls.optim_defaults) <= {"lr", "weight_decay"}, (method, cls.optim_defaults)


@pytest.mark.parametrize("method", ["ijepa", "mae"])
def test_vit_methods_refuse_vectors_clearly(method):
    cls = METHODS.get(method)
    assert cls.data_kinds == ("image",) and not cls.supports("vector") and cls.supports("image")
    with pytest.raises(ConfigError, match=rf"^method {method} needs image data; dataset 'mog2d' is vector data"):
        build_method(tiny_cfg(method, "mog2d"), data_spec(data("mog2d")))
    # the declaration is true, not only cautious: built on the vector backbone anyway, they refuse
    from ssl_bench.backbones import build_backbone

    spec = data_spec(data("mog2d"))
    with pytest.raises(ConfigError, match="needs a timm ViT backbone"):
        cls(build_backbone("mlp", spec.input_shape, "vector"), {}, spec)


# ---------------------------------------------------------------- a third-party entry point
@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    """Install examples/ssl-bench-example-plugin as pip would (a dist-info with the entry points
    its pyproject.toml declares, its package on sys.path): no network, no build."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    eps = meta["entry-points"]["ssl_bench.methods"]
    site = tmp_path / "site"
    dist = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (dist / "entry_points.txt").write_text("[ssl_bench.methods]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    METHODS.reload()
    yield list(eps)
    for name in eps:
        METHODS.unregister(name)
    for mod in [m for m in sys.modules if m.startswith("ssl_bench_example")]:
        sys.modules.pop(mod)


def test_example_plugin_registers_through_entry_point_and_conforms(example_plugin, tmp_path):
    assert example_plugin == ["tico"]
    assert "tico" in METHODS.names() and "entry point" in METHODS.source("tico")
    assert not (ROOT / "methods" / "tico.py").exists()  # it lives outside the repository's plugins
    check_training_step("tico")
    check_determinism_and_roundtrip("tico", tmp_path)
    # its loss against the formula, written out: -mean <z1, z2> + rho * mean z1^T C z1
    from ssl_bench_example.tico import tico_loss

    g = torch.Generator().manual_seed(0)
    z1, z2, a = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    cov = a.t() @ a
    want = -sum(float(z1[i] @ z2[i]) for i in range(4)) / 4 + 8.0 * sum(
        float(z1[i] @ cov @ z1[i]) for i in range(4)) / 4
    assert tico_loss(z1, z2, cov, 8.0).item() == pytest.approx(want, rel=1e-12)
