"""Registries: lookups, errors that list what exists, and third-party entry points."""
import sys
import textwrap

import pytest

from ssl_bench.errors import UnknownNameError
from ssl_bench.registry import DATASETS, EVALUATORS, METHODS


def test_builtins_are_registered():
    assert {"simclr", "byol", "vicreg"} <= set(METHODS.names())
    assert {"knn", "rankme"} <= set(EVALUATORS.names())
    assert {"fashion-mnist", "digits", "mog2d", "cifar10", "cifar100", "stl10", "imagefolder"} <= set(DATASETS.names())


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        METHODS.get("simclrr")
    msg = str(err.value)
    assert "unknown method 'simclrr'" in msg and "simclr" in msg and "vicreg" in msg and "\n" not in msg


def test_resolve_all_and_lists():
    assert METHODS.resolve("all") == METHODS.names()
    assert METHODS.resolve("vicreg, simclr") == ["vicreg", "simclr"]
    with pytest.raises(UnknownNameError):
        METHODS.resolve("simclr,nope")


def test_plugin_package_is_not_top_level():
    import importlib.util

    import ssl_bench.methods

    assert importlib.util.find_spec("methods") is None or "ssl_bench" not in str(importlib.util.find_spec("methods").origin)
    assert ssl_bench.methods.__name__ == "ssl_bench.methods"


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A third-party distribution on sys.path that declares entry points (no core file touched)."""
    pkg = tmp_path / "site" / "acme_ssl"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent('''
        from ssl_bench import losses
        from ssl_bench.heads import MLPHead
        from ssl_bench.method import Method
        from ssl_bench.evaluator import Evaluator

        class AcmeMethod(Method):
            """Acme: SimCLR with a linear projector (third-party test plugin)."""
            defaults = dict(temperature=0.2)

            def __init__(self, backbone, hp=None, spec=None):
                super().__init__(backbone, hp, spec)
                self.proj = MLPHead(backbone.out_dim, 16, 16, num_layers=1)

            def training_step(self, views):
                z1, z2 = (self.proj(self.backbone(v)) for v in views)
                return losses.info_nce(z1, z2, self.hp.temperature), {}

        class AcmeMeanNorm(Evaluator):
            """Mean L2 norm of the test embeddings."""
            needs_labels = False

            def evaluate(self, emb):
                import numpy as np
                return {"mean_norm": float(np.linalg.norm(emb.test_x, axis=1).mean())}

        def acme_lines(root=None, **_):
            """Points on 3 lines through the origin, label = line."""
            import torch
            from ssl_bench.datasets import Data
            g = torch.Generator().manual_seed(0)
            def make(n):
                y = torch.randint(0, 3, (n,), generator=g)
                t = torch.randn(n, generator=g) * 3
                ang = y.float() * 2.1
                return torch.stack([t * ang.cos(), t * ang.sin()], 1), y
            (xa, ya), (xb, yb) = make(600), make(200)
            return Data("acme-lines", xa, ya, xb, yb, 3, "vector")
    '''))
    dist = tmp_path / "site" / "acme_ssl-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ssl\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ssl_bench.methods]\nacme = acme_ssl.plugin:AcmeMethod\n\n"
        "[ssl_bench.evaluators]\nacme-norm = acme_ssl.plugin:AcmeMeanNorm\n\n"
        "[ssl_bench.datasets]\nacme-lines = acme_ssl.plugin:acme_lines\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    METHODS.reload()
    EVALUATORS.reload()
    DATASETS.reload()
    yield
    DATASETS.unregister("acme-lines")
    METHODS.unregister("acme")
    EVALUATORS.unregister("acme-norm")
    sys.modules.pop("acme_ssl.plugin", None)
    sys.modules.pop("acme_ssl", None)


def test_entry_point_plugin_is_discovered_and_runs(third_party, tiny, runs):
    from ssl_bench.pipeline import evaluate_checkpoint
    from ssl_bench.trainer import train

    assert "acme" in METHODS.names() and "acme-norm" in EVALUATORS.names()
    assert "entry point" in METHODS.source("acme")
    res = train(tiny(method="acme", epochs=1), runs)
    rows = evaluate_checkpoint(res.checkpoint, ["knn", "acme-norm"])
    by = {(r["evaluator"], r["metric"]): r["value"] for r in rows}
    assert by[("acme-norm", "mean_norm")] > 0
    assert 12.5 < by[("knn", "top1")] <= 100  # 8 classes: above chance after training


def test_entry_point_dataset(third_party, tiny, runs):
    from ssl_bench.trainer import train

    assert "acme-lines" in DATASETS.names()
    res = train(tiny(dataset="acme-lines", epochs=1, train_subset=None), runs)
    assert res.checkpoint.is_file()
