"""The recipes of docs/evaluate-your-encoder.md are real: each Python block runs in an empty folder,
then its command runs through ``ssl-bench`` on small data (digits, smoke preset, 256/128 images,
k-NN, 16 px where the recipe resizes) and writes rows labelled ``external:...``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ssl_bench.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluate-your-encoder.md"
SMALL = ["--dataset", "digits", "--preset", "smoke", "--eval-train-subset", "256", "--eval-test-subset", "128",
         "--evaluators", "knn", "--no-progress", "--device", "cpu"]


def recipes() -> dict[str, tuple[str, str | None]]:
    """{name: (python code, shell command or None)} of every ``<!-- recipe: NAME -->``."""
    out = {}
    parts = re.split(r"<!-- recipe: ([\w-]+) -->", DOC.read_text())
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.split("\n### ", 1)[0]
        code = re.search(r"```python\n(.*?)```", body, re.S).group(1)
        cmd = re.search(r"```bash\n(.*?)```", body, re.S)
        out[name] = (code, cmd.group(1).replace("\\\n", " ").strip() if cmd else None)
    return out


def test_the_guide_has_the_five_recipes_and_the_api():
    assert set(recipes()) == {"lightly", "solo-learn", "timm", "hf", "factory", "python"}


def _rows(out: Path) -> list[dict]:
    from ssl_bench.results import read_rows

    return read_rows(sorted(out.glob("*/results.jsonl")))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lightly", "solo-learn", "timm", "hf", "factory"])
def test_recipe_command_runs(name, tmp_path, monkeypatch, capsys):
    code, cmd = recipes()[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # PYTHONPATH=. of the factory recipe
    exec(compile(code, f"{DOC.name}:{name}", "exec"), {"__name__": f"recipe_{name}".replace("-", "_")})
    argv = [w for w in shlex.split(cmd) if not re.match(r"^[A-Z_]+=", w)]
    assert argv[:2] == ["ssl-bench", "eval"]
    small = SMALL + (["--input-size", "16"] if "--input-size" in argv else [])
    assert main([*argv[1:], *small, "--out", str(tmp_path / "runs")]) == 0, capsys.readouterr().err
    rows = _rows(tmp_path / "runs")
    assert rows and all(r["method"].startswith("external:") and r["evaluator"] == "knn" for r in rows)
    top1 = next(r["value"] for r in rows if r["metric"] == "top1")
    assert 0 < top1 <= 100


def test_python_recipe_runs(tmp_path, monkeypatch, capsys):
    from ssl_bench import external_eval

    code, _ = recipes()["python"]
    monkeypatch.chdir(tmp_path)
    real = external_eval.evaluate_external

    def small(model, out, **kw):  # the recipe's call, on small data
        kw.update(dataset="digits", preset="smoke", eval_train_subset=256, eval_test_subset=128, progress=False)
        return real(model, out, **kw)

    monkeypatch.setattr(external_eval, "evaluate_external", small)
    exec(compile(code, f"{DOC.name}:python", "exec"), {"__name__": "recipe_python"})
    assert "top1" in capsys.readouterr().out
    rows = _rows(tmp_path / "runs")
    assert {r["evaluator"] for r in rows} == {"knn", "linear"}
