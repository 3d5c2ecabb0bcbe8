"""jepa-masked's dense variant (``dense=True``): I-JEPA's per-location targets on a CNN's last
feature map, with the loss on the hidden cells only (``dense_loss="masked"``) or everywhere."""
import pytest
import torch

from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.errors import ConfigError
from ssl_bench.method import TrainClock
from ssl_bench.trainer import build_method, data_spec
from ssl_bench.views import view_generator

_DATA: dict = {}


def _method(dataset="digits", **opts):
    if dataset not in _DATA:
        _DATA[dataset] = load_dataset(dataset)
    d = _DATA[dataset]
    torch.manual_seed(0)
    cfg = RunConfig(method="jepa-masked", dataset=dataset, preset="smoke", device="cpu", progress=False,
                    method_kwargs=opts)
    m = build_method(cfg, data_spec(d))
    m.clock = TrainClock(3, 10, 20, seed=1)
    return m, d


def test_hidden_cells_per_image():
    m, _ = _method(dense=True, mask_patch=2, mask_ratio=0.25)  # 8x8 digits: a 4x4 grid of 2-px cells
    keep = m._cell_keep(torch.zeros(64, 1, 8, 8))
    assert keep.shape == (64, 1, 8, 8) and set(keep.unique().tolist()) == {0.0, 1.0}
    hidden_cells = (1 - keep[:, 0, ::2, ::2]).sum((1, 2))
    assert torch.equal(hidden_cells, torch.full((64,), 4.0))  # round(0.25 * 16) in every image
    assert torch.equal(keep, m._cell_keep(torch.zeros(64, 1, 8, 8)))  # the step's stream: same step, same mask
    m.clock = TrainClock(4, 10, 20, seed=1)
    assert not torch.equal(keep, m._cell_keep(torch.zeros(64, 1, 8, 8)))
    m2, _ = _method(dense=True, mask_patch=4, mask_ratio=0.99)  # 2x2 cells: one always stays visible
    assert torch.equal((1 - m2._cell_keep(torch.zeros(8, 1, 8, 8))[:, 0, ::4, ::4]).sum((1, 2)), torch.full((8,), 3.0))


@pytest.mark.parametrize("loss", ["masked", "all"])
def test_dense_step_trains_the_encoder(loss):
    m, d = _method(dense=True, dense_loss=loss)
    assert m.dense
    views = m.make_views(data_spec(d))(d.to_float(d.x_train[:16]), view_generator(0, 0, "cpu"))
    assert len(views) == (1 if loss == "masked" else 2)
    out, _ = m.training_step(views)
    out.backward()
    assert torch.isfinite(out) and out.item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())
    assert all(p.grad is None for p in m.target_backbone.parameters())


def test_only_the_hidden_cells_count():
    """A predictor that is exact on the hidden locations gives loss 0 with dense_loss="masked", whatever
    it says on the visible ones."""
    m, d = _method(dense=True, mask_patch=4, mask_ratio=0.5)
    views = m.make_views(data_spec(d))(d.to_float(d.x_train[:8]), view_generator(0, 0, "cpu"))
    keep = m._cell_keep(views[0])
    with torch.no_grad():
        t = m.target_backbone.feature_map(views[0])
        t = torch.nn.functional.layer_norm(t.movedim(1, -1), t.shape[1:2]).movedim(-1, 1)
    hidden = 1 - torch.nn.functional.adaptive_avg_pool2d(keep, t.shape[-2:])  # 1: the whole cell hidden

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return torch.where(hidden > 0, t, torch.full_like(t, 100.0))

    m.predictor = Oracle()
    assert m.training_step(views)[0].item() == pytest.approx(0.0, abs=1e-10)
    m.hp.dense_loss = "all"
    m.predictor = Oracle()
    assert m.training_step([views[0] * keep, views[0]])[0].item() > 100


def test_dense_falls_back_and_rejects_bad_options():
    m, _ = _method("mog2d", dense=True)  # an MLP has no spatial map: the global prediction
    assert not m.dense
    with pytest.raises(ConfigError, match="dense_loss"):
        _method(dense=True, dense_loss="everywhere")
    with pytest.raises(ConfigError, match="independent_views"):
        _method(dense=True, independent_views=True)
