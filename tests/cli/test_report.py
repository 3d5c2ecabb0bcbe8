"""ssl-bench report: the online k-NN monitor, the figures, the self-contained HTML page, and the
page rendered in headless Chromium."""
import csv
import time

import torch

from ssl_bench.checkpoint import latest_epoch_checkpoint, read_encoder
from ssl_bench.trainer import train


def _log(run_dir):
    with open(run_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_knn_monitor_logs_accuracy_and_leaves_training_unchanged(tiny, runs, tmp_path):
    on = train(tiny(method="vicreg", epochs=3, knn_monitor_every=2), runs)
    off = train(tiny(method="vicreg", epochs=3), tmp_path / "off")  # smoke preset: monitor off
    assert on.run_dir.name == off.run_dir.name  # a monitoring key is not part of the config hash
    rows = _log(on.run_dir)
    # every 2 epochs and at the last one; 8 mog2d components, chance = 12.5 %
    assert [bool(r["knn_monitor"]) for r in rows] == [False, True, True]
    assert all(30 < float(r["knn_monitor"]) <= 100 for r in rows if r["knn_monitor"])
    assert "knn_monitor" not in _log(off.run_dir)[0]
    a, _ = read_encoder(on.checkpoint)
    b, _ = read_encoder(off.checkpoint)
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_knn_monitor_presets():
    from ssl_bench.config import RunConfig

    from ssl_bench.config import PRESETS
    from ssl_bench.monitor import every

    got = {p: every(RunConfig(preset=p).with_preset()) for p in PRESETS}
    assert got.pop("smoke") == 0 and all(v >= 1 for v in got.values())  # on in quick, full (and any other)


# -- the report --------------------------------------------------------------------------------
import base64  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from ssl_bench.cli import main  # noqa: E402
from ssl_bench.report import SECTIONS  # noqa: E402

MOG_FIGURES = ["curves", "monitor", "spectra", "rankme", "pca", "knn-prf", "energy", "dsm"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A tiny two-dataset runs directory: simclr + dsm on mog2d through `ssl-bench run` (which
    writes the report by default, to report/ inside the runs directory), then simclr on digits with
    the reconstruction evaluator (--no-report), and `ssl-bench report` over both into page/."""
    root = tmp_path_factory.mktemp("report")
    common = ["--preset", "smoke", "--device", "cpu", "--no-progress", "--set", "precision=fp32",
              "--out", str(root / "runs"), "--leaderboards", str(root / "lb")]
    assert main(["run", "--dataset", "mog2d", "--methods", "simclr,dsm", "--epochs", "2", "--batch-size", "64",
                 "--set", "train_subset=512", "--set", "eval_train_subset=512", "--set", "eval_test_subset=256",
                 "--set", "knn_monitor_every=1", "--evaluators", "knn,rankme,collapse"] + common) == 0
    assert main(["run", "--dataset", "digits", "--methods", "simclr", "--epochs", "1", "--batch-size", "64",
                 "--set", "train_subset=512", "--set", "eval_train_subset=512", "--set", "eval_test_subset=128",
                 "--evaluators", "knn,rankme,collapse,reconstruction", "--no-report",
                 "--set", "eval_kwargs={reconstruction: {n_train: 128, n_test: 64, hidden: 32}}"] + common) == 0
    assert main(["report", "--runs", str(root / "runs"), "--out", str(root / "page"), "--quiet"]) == 0
    return root


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, re.S))


@pytest.mark.slow
def test_run_writes_the_report_by_default(report_dir):
    page = (report_dir / "runs" / "report" / "index.html").read_text()
    assert "mog2d" in page and "digits" not in page  # written at the end of the first run only


def test_runs_and_baselines_write_their_files_to_one_artifacts_folder(report_dir):
    """Every run and every baseline keeps its evaluators' files in ``<run>/artifacts/``
    (checkpoint runs prefix them ``epoch_NNNN-``); nothing under ``checkpoints/``."""
    runs = report_dir / "runs"
    assert not list(runs.glob("*/checkpoints/artifacts"))
    trained = [d for d in runs.iterdir() if (d / "checkpoints").is_dir()]
    baselines = [d for d in runs.iterdir() if (d / "results.jsonl").is_file() and not (d / "checkpoints").is_dir()]
    assert {d.name for d in runs.iterdir() if not (d / "results.jsonl").is_file()} == {"report"}  # run's report
    assert trained and baselines
    for d in trained:
        assert sorted(p.name for p in (d / "artifacts").glob("*collapse-spectrum.npy")) == [
            f"{latest_epoch_checkpoint(d / 'checkpoints').stem}-collapse-spectrum.npy"]
    assert all((d / "artifacts" / "collapse-spectrum.npy").is_file() for d in baselines)
    digits = [d for d in trained if "digits" in d.name]
    assert digits and list((digits[0] / "artifacts").glob("epoch_*-reconstruction.png"))


def test_report_is_self_contained(report_dir):
    page = (report_dir / "page" / "index.html").read_text()
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:|//)', page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


#: the figure sections each dataset of report_dir draws: no reconstruction grid for mog2d's vectors, no
#: mog2d panels for digits, and no monitor for its smoke run (monitor off)
DRAWN = {"mog2d": [sid for sid, _, _ in SECTIONS if sid != "reconstruction"],
         "digits": [sid for sid, _, _ in SECTIONS if sid not in ("monitor", "energy", "dsm")]}


def test_report_has_table_first_then_every_figure(report_dir):
    page = (report_dir / "page" / "index.html").read_text()
    sec = _sections(page)
    for ds in ("mog2d", "digits"):
        ids = [s for s in re.findall(r'<section id="([^"]+)">', page) if s.startswith(ds + "-")]
        assert ids == [f"{ds}-leaderboard"] + [f"{ds}-{sid}" for sid in DRAWN[ds]]
    table = sec["mog2d-leaderboard"]
    for m in ("<td>simclr", "<td>dsm", "pixels", "random-init"):
        assert m in table, m
    assert "± 0.00" not in table and "<td>1</td>" in table  # n = 1 seed: the value alone, no false certainty
    # the same metric columns and values as the leaderboard Markdown `ssl-bench run` wrote
    legend = re.search(r'<ul class="note">(.*?)</ul>', table).group(1)  # the metric legend, as a list
    assert "<li><b>k-NN top1</b>" in legend and "- " not in re.sub(r"<[^>]+>", "", legend)[:2]
    head = re.findall(r"<th>(.*?)</th>", table)
    assert head[:5] == ["method", "backbone", "preset", "epochs", "n"] and {"k-NN top1", "RankMe"} <= set(head)
    md = (report_dir / "lb" / "mog2d.md").read_text()
    md_rows = {c[0]: c for c in ([x.strip() for x in ln.strip().strip("|").split("|")] for ln in md.splitlines()
                                 if ln.startswith("| ") and not ln.startswith("| method"))}
    for tr in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1]):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", tr)]
        want = md_rows[next(k for k in md_rows if k.strip("_") == cells[0])]
        assert cells[5:] == want[5:] and head[5:-1] and len(cells) == len(head)
    for sid in MOG_FIGURES:
        assert "<img " in sec[f"mog2d-{sid}"], sid
    for sid in ("curves", "spectra", "rankme", "pca", "knn-prf", "reconstruction"):
        assert "<img " in sec[f"digits-{sid}"], sid
    # sections that do not apply are left out silently; one without data is named in a grey note
    assert "No figure" not in page and 'class="missing"' not in page
    assert 'id="mog2d-not-drawn"' not in page  # mog2d: everything that applies is drawn
    note = re.search(r'<div class="note" id="digits-not-drawn">(.*?)</div>', page, re.S).group(1)
    assert re.findall(r"<li>(.*?):", note) == ["Online k-NN monitor"] and "smoke preset" in note
    # the table of contents links every section on the page, in page order, and nothing else
    toc = re.search(r'<nav class="toc" id="contents">(.*?)</nav>', page, re.S).group(1)
    assert page.index("</nav>") < page.index("<section ")
    links = re.findall(r'<a href="#([^"]+)">', toc)
    assert links == re.findall(r'<(?:h1|section) id="([^"]+)">', page)  # digits, its sections, mog2d, its sections
    assert links[0] == "digits" and "mog2d-energy" in links and len(links) == 2 + len(DRAWN["mog2d"] + DRAWN["digits"]) + 2
    # the P/R/F1 table: both methods and the two references, all from the knn result rows
    assert sec["mog2d-knn-prf"].count("<tr><td>") == 4
    assert sec["mog2d-knn-prf"].count("<td>result rows</td>") == 4


def _prf_table(section: str) -> dict[str, list[str]]:
    return {r[0]: r[1:] for r in (re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", section))
            if r}


def test_knn_rows_hold_per_class_precision_recall_f1_and_the_report_shows_them(report_dir, tmp_path):
    """Every mog2d run's knn rows have the 8 components' P/R/F1 and their macro means; the page's
    table shows those rows' values; with the per-class rows gone the page recomputes the same
    numbers from the cached embeddings."""
    from ssl_bench.report import build_html
    from ssl_bench.results import append_rows, read_rows

    runs = report_dir / "runs"
    mog = [d for d in runs.iterdir() if d.name.startswith("mog2d-")]
    assert len(mog) == 4  # simclr, dsm, pixels, random-init
    table = _prf_table(_sections((report_dir / "page" / "index.html").read_text())["mog2d-knn-prf"])
    for d in mog:
        rows = read_rows([d / "results.jsonl"])
        knn = {r["metric"]: r["value"] for r in rows if r["evaluator"] == "knn"}
        for m in ("precision", "recall", "f1"):
            per = [knn[f"{m}_class{c}"] for c in range(8)]
            assert knn[f"{m}_macro"] == pytest.approx(sum(per) / 8)
            assert all(0 <= v <= 100 for v in per)
        method = rows[0]["method"]
        assert table[method] == [f"{knn['top1']:.2f}", f"{knn['precision_macro']:.2f}",
                                 f"{knn['recall_macro']:.2f}", f"{knn['f1_macro']:.2f}", "result rows"]
    # strip the per-class rows of the simclr run: the report recomputes them from its embeddings
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, ignore=shutil.ignore_patterns("digits-*"))
    (simclr,) = [d for d in copy.iterdir() if d.name.startswith("mog2d-simclr-")]
    res = simclr / "results.jsonl"
    kept = [r for r in read_rows([res]) if "_class" not in r["metric"]]
    res.unlink()
    append_rows(res, kept)
    again = _prf_table(_sections(build_html(copy))["knn-prf"])
    assert again["simclr"][-1] == "recomputed (k = 20, T = 0.07)"
    assert again["simclr"][:4] == table["simclr"][:4]  # the evaluator's defaults, the same embeddings


def test_report_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "no runs under" in capsys.readouterr().err


CHECK_JS = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const r = {images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
             rows: [...document.querySelectorAll('section[id$="leaderboard"] table.leaderboard tbody tr')]
                   .map(tr => tr.cells[0].textContent)};
  const pre = document.createElement('pre'); pre.id = 'check'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});</script>"""


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    page = (report_dir / "page" / "index.html").read_text()
    probe = tmp_path / "probe.html"  # the page plus a script that reports what the browser decoded
    probe.write_text(page.replace("</body>", CHECK_JS + "</body>"))
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="check">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["images"] == page.count("<img ") and got["decoded"] == got["images"]
    # each row's label is the method name plus the options that differ from its defaults
    assert sorted(r.split(" [")[0] for r in got["rows"]) == sorted(["simclr", "dsm", "pixels", "random-init",  # mog2d
                                          "simclr", "pixels", "random-init"])  # digits
    shot = tmp_path / "shot.png"
    subprocess.run(flags + ["--window-size=1400,2400", "--hide-scrollbars", f"--screenshot={shot}",
                            (report_dir / "page" / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert px.shape[:2] == (2400, 1400)
    assert px.std() > 20 and len(np.unique(px.reshape(-1, 3)[::97], axis=0)) > 50  # not blank


# -- a Fashion-MNIST report: per-step curves, monitor against seconds, nothing red ---------------
from conftest import needs_fmnist  # noqa: E402


@pytest.mark.slow
@needs_fmnist
def test_fashion_mnist_report_has_step_curves_and_no_missing_figure(tmp_path, monkeypatch):
    """A 2-epoch Fashion-MNIST run (512 images, 8 steps per epoch, a log row every 2 steps): its
    report draws a loss curve of 8 points per run (not 2), the monitor against seconds, and no
    "No figure" line: the mog2d-only panels are left out, the reconstruction grid is not drawn
    because no run asked for it, and the page says so in grey."""
    from ssl_bench import figures, report

    runs = tmp_path / "runs"
    assert main(["run", "--dataset", "fashion-mnist", "--methods", "simclr", "--preset", "smoke", "--epochs", "2",
                 "--batch-size", "64", "--set", "train_subset=512", "--set", "eval_train_subset=512",
                 "--set", "eval_test_subset=256", "--set", "log_every=2", "--set", "knn_monitor_every=1",
                 "--set", "precision=fp32", "--evaluators", "knn,rankme,collapse", "--device", "cpu",
                 "--no-progress", "--no-baselines", "--out", str(runs), "--leaderboards", str(tmp_path / "lb"),
                 "--no-report"]) == 0
    drawn = {}
    for name in ("learning_curves", "monitor_overlay"):
        def spy(curves, _f=getattr(figures, name), _n=name):
            drawn[_n] = curves
            return _f(curves)
        monkeypatch.setattr(figures, name, spy)
    page = report.build_html(runs)
    assert "No figure" not in page and 'class="missing"' not in page
    curve = drawn["learning_curves"]["simclr"]
    assert curve["step_epoch"] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0] and len(curve["step_loss"]) == 8
    assert curve["epoch"] == [1, 2]
    mon = drawn["monitor_overlay"]["simclr"]
    assert len(mon["knn_seconds"]) == len(mon["knn"]) == 2 and 0 < mon["knn_seconds"][0] < mon["knn_seconds"][1]
    sec = _sections(page)
    assert [s for s in sec if s != "leaderboard"] == ["curves", "monitor", "spectra", "rankme", "pca", "knn-prf"]
    note = re.search(r'<div class="note" id="not-drawn">(.*?)</div>', page, re.S).group(1)
    assert re.findall(r"<li>(.*?):", note) == ["Reconstruction grids"]
    assert re.findall(r'<a href="#([^"]+)">', page.split("</nav>")[0].split('<nav class="toc"')[1]) == [
        "fashion-mnist", "leaderboard", "curves", "monitor", "spectra", "rankme", "pca", "knn-prf"]


def test_rankme_axis_is_logarithmic_when_pixels_are_far_away():
    from ssl_bench.figures import rank_axis_scale, rankme_vs_knn

    assert rank_axis_scale([25.3, 24.4, 11.1, 343.0]) == "log"  # methods near 25, pixels at 343
    assert rank_axis_scale([25.3, 24.4, 30.0]) == "linear"
    assert rank_axis_scale([0.0, 40.0]) == "linear"  # a collapsed rank of 0 has no place on a log axis
    assert rankme_vs_knn({"simclr": (25.3, 71.2), "pixels": (343.0, 70.0)})[:8] == b"\x89PNG\r\n\x1a\n"


def test_monitor_seconds_come_from_the_per_epoch_log(tmp_path):
    from ssl_bench.report import Run, read_curve

    (tmp_path / "train_log.csv").write_text("epoch,step,lr,seconds,loss,knn_monitor\n1,8,0.1,4.5,2.0,\n"
                                            "2,16,0.05,9.25,1.5,61.0\n3,24,0.0,14.0,1.25,64.5\n")
    c = read_curve(Run(tmp_path, "simclr", "mog2d", "mlp", 0))
    assert c["knn_epoch"] == [2, 3] and c["knn"] == [61.0, 64.5] and c["knn_seconds"] == [9.25, 14.0]
    assert c["step_loss"] == []  # a run from before train_steps.csv: the per-epoch points only


def test_monitor_checks_come_from_monitor_csv_where_the_run_has_one(tmp_path):
    """A run that records every monitor check (monitor.csv: seconds, step, epoch, knn, heldout) is
    drawn from those rows; its unreadable rows are skipped."""
    from ssl_bench.report import Run, read_curve

    (tmp_path / "train_log.csv").write_text("epoch,step,lr,seconds,loss,knn_monitor\n1,8,0.1,4.5,2.0,50.0\n"
                                            "2,16,0.0,9.0,1.5,60.0\n")
    (tmp_path / "monitor.csv").write_text("seconds,step,epoch,knn,heldout\n2.250,4,1,40.5000,1\n4.500,8,1,50.0000,1\n"
                                          "6.75,12,2,55.0,1\n9.000,16,2,60.0000,1\ntorn,16\n")
    c = read_curve(Run(tmp_path, "simclr", "mog2d", "mlp", 0))
    assert c["knn"] == [40.5, 50.0, 55.0, 60.0] and c["knn_seconds"] == [2.25, 4.5, 6.75, 9.0]
    assert c["knn_epoch"] == [1, 1, 2, 2] and c["epoch"] == [1, 2]
