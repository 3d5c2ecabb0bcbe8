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

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md"


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
