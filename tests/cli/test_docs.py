"""The worked example of docs/adding-a-method.md is real code: it loads, registers, trains."""
import csv
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from ssl_bench.registry import METHODS
from ssl_bench.trainer import train

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-method.md"


@pytest.fixture
def spectral(tmp_path):
    text = DOC.read_text()
    section = text.split("## A worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 150
    path = tmp_path / "doc_spectral.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("doc_spectral", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # registers "spectral"
    yield mod
    METHODS.unregister("spectral")


def test_doc_loss_matches_its_formula(spectral):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    pos = sum(float(z1[i] @ z2[i]) for i in range(5)) / 5
    neg = sum(float(z1[i] @ z2[j]) ** 2 for i in range(5) for j in range(5) if i != j) / 20
    assert float(spectral.spectral_contrastive(z1, z2)) == pytest.approx(-2 * pos + neg, rel=1e-5)


def test_doc_method_registers_and_trains(spectral, tiny, runs):
    assert "spectral" in METHODS.names()
    res = train(tiny(method="spectral", dataset="digits", epochs=1, batch_size=64, train_subset=256), runs)
    rows = list(csv.DictReader(open(Path(res.run_dir) / "train_log.csv")))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))


# ------------------------------------------------------------ docs/adding-an-evaluator.md
def _load_worked_example(doc: Path, module: str, tmp_path: Path):
    """The first python block after '## A worked example' of ``doc``, loaded as ``module``."""
    section = doc.read_text().split("## A worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / f"{module}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # registers the example
    return mod


EVALUATOR_DOC = DOC.parent / "adding-an-evaluator.md"
DATASET_DOC = DOC.parent / "adding-a-dataset.md"


@pytest.fixture
def uniformity_doc(tmp_path):
    from ssl_bench.registry import EVALUATORS

    yield _load_worked_example(EVALUATOR_DOC, "doc_uniformity", tmp_path)
    EVALUATORS.unregister("uniformity")


def test_doc_evaluator_matches_its_formula(uniformity_doc):
    import numpy as np

    z = np.random.default_rng(0).standard_normal((7, 3))
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    pairs = [math.exp(-2 * float(np.sum((u[i] - u[j]) ** 2))) for i in range(7) for j in range(7) if i != j]
    assert uniformity_doc.uniformity(z) == pytest.approx(math.log(sum(pairs) / len(pairs)), rel=1e-9)
    assert uniformity_doc.uniformity(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-12)  # collapsed: the maximum


def test_doc_evaluator_keeps_the_contract(uniformity_doc):
    from test_evaluator_contract import assert_finite_floats, embeddings

    from ssl_bench.errors import ConfigError
    from ssl_bench.registry import EVALUATORS

    cls = EVALUATORS.get("uniformity")
    first = cls()(embeddings())
    assert_finite_floats("uniformity", first)
    assert cls()(embeddings()) == first == cls()(embeddings(labels=False))
    with pytest.raises(ConfigError, match="no_such_option"):
        cls(no_such_option=1)
    assert cls.metric("uniformity").higher_is_better is False


def test_doc_evaluator_runs_by_name(uniformity_doc, tmp_path, capsys):
    import json

    import numpy as np

    from ssl_bench.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "emb.npz"
    np.savez(path, train_x=rng.standard_normal((50, 4)), test_x=rng.standard_normal((20, 4)))
    assert main(["eval-embeddings", str(path), "--evaluators", "uniformity", "--eval-opt", "uniformity.t=1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["uniformity"]) >= {"uniformity"} and out["uniformity"]["uniformity"] < 0


# ------------------------------------------------------------ docs/adding-a-dataset.md
@pytest.fixture
def stripes_doc(tmp_path):
    from ssl_bench.registry import DATASETS

    yield _load_worked_example(DATASET_DOC, "doc_stripes", tmp_path)
    DATASETS.unregister("stripes")


def test_doc_dataset_keeps_the_contract(stripes_doc):
    from ssl_bench.datasets import load_dataset
    from ssl_bench.errors import ConfigError

    d = load_dataset("stripes", n_train=64, n_test=32, size=12, n_classes=3)
    assert d.kind == "image" and d.num_classes == 3 and d.input_shape == (1, 12, 12)
    assert d.x_train.dtype == d.x_test.dtype == torch.uint8 and d.y_train.dtype == d.y_test.dtype == torch.int64
    assert d.x_train.shape == (64, 1, 12, 12) and d.x_test.shape == (32, 1, 12, 12)
    assert int(d.y_train.min()) >= 0 and int(max(d.y_train.max(), d.y_test.max())) < 3
    x = d.x_train.float() / 255
    assert d.mean == pytest.approx(tuple(x.mean((0, 2, 3)).tolist())) and len(d.std) == 1 and d.std[0] > 0
    again = load_dataset("stripes", n_train=64, n_test=32, size=12, n_classes=3)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    assert not torch.equal(load_dataset("stripes", n_train=64, n_test=32, size=12, seed=1).x_train, d.x_train)
    with pytest.raises(ConfigError, match="no option"):
        load_dataset("stripes", colour=True)
    with pytest.raises(ConfigError, match="size"):
        load_dataset("stripes", size=2)


def test_doc_dataset_trains(stripes_doc, tiny, runs):
    res = train(tiny(method="simclr", dataset="stripes", dataset_kwargs={"n_train": 256, "n_test": 64}, epochs=1,
                     batch_size=64, train_subset=None, eval_train_subset=None, eval_test_subset=None), runs)
    rows = list(csv.DictReader(open(Path(res.run_dir) / "train_log.csv")))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))
