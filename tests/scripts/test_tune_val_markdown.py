"""scripts/tune_val.py's optimiser table: the trials tagged 'optimiser: ...' side by side per method,
with the method's declared paper optimiser."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import tune_val  # noqa: E402


def _trial(method, tag, knn, lin=None):
    r = {"method": method, "opt": {}, "set": {}, "precision": "bf16", "val_knn": knn, "train_s": 1.0, "tag": tag,
         "when": "2026-12-05T00:00:00Z"}
    return r if lin is None else {**r, "val_linear": lin}


def test_optimiser_table_one_line_per_method_one_column_per_tag():
    rows = [_trial("simclr", "optimiser: adamw", 83.1, 85.0), _trial("simclr", "optimiser: paper", 82.0),
            _trial("moco-v2", "optimiser: paper", 80.5, 84.25), _trial("dsm", "sigma", 83.77)]
    lines = tune_val.optimiser_table(rows)
    assert lines[0] == "## Optimisers"
    assert "| method | adamw | paper | paper optimiser |" in lines
    assert "| simclr | 83.10 / 85.00 | 82.00 / - | LARS, lr 0.3 x batch/256, wd 1e-06 |" in lines
    assert "| moco-v2 | - | 80.50 / 84.25 | SGD, lr 0.03 x batch/256, wd 0.0001 |" in lines
    assert not any(ln.startswith("| dsm") for ln in lines)  # not an optimiser trial
    assert tune_val.optimiser_table([_trial("dsm", "sigma", 83.77)]) == []
