"""External encoders (#29): ``ssl-bench eval --encoder SPEC`` and ``ssl_bench.evaluate``.

Every encoder and every weights file is built here (nothing is downloaded): a lightly SimCLR on
a torchvision ResNet-18 saved as a Lightning-style ``.ckpt``, a timm state dict, a transformers
ViT from a small config saved with ``save_pretrained``, a torchvision model, a factory. For each,
the embeddings ssl-bench computed (its cache) equal a direct forward of the same module on the
same adapted batch, adapted here by hand (grey -> 3 channels, bilinear resize, the encoder's
normalisation). Data: scikit-learn's digits (8x8 grey), 256 training and 128 test images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.cli import main
from ssl_bench.external_eval import evaluate_external, evaluation_config
from ssl_bench.registry import DATASETS
from ssl_bench.results import read_rows

N_TRAIN, N_TEST = 256, 128
SMALL = dict(dataset="digits", preset="smoke", eval_train_subset=N_TRAIN, eval_test_subset=N_TEST, progress=False)
CLI_SMALL = ["--dataset", "digits", "--preset", "smoke", "--eval-train-subset", str(N_TRAIN),
             "--eval-test-subset", str(N_TEST), "--no-progress", "--device", "cpu"]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIZE = 16  # ResNet-18 input size: the 8x8 digits upsampled, small enough for CI's 2 cores


def eval_images(split: str = "train") -> torch.Tensor:
    """The evaluation images ssl-bench embeds, as floats in [0, 1]."""
    from ssl_bench.embeddings import eval_split

    cfg = evaluation_config("digits", "smoke", 0, N_TRAIN, N_TEST)
    d = eval_split(cfg, DATASETS.get("digits")())
    return (d.x_train if split == "train" else d.x_test).float() / 255.0


def adapted(x: torch.Tensor, chans: int, size: int, mean, std) -> torch.Tensor:
    x = x.expand(-1, chans, -1, -1) if x.shape[1] != chans else x
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def cached(out: Path, rows: list[dict]) -> np.lib.npyio.NpzFile:
    """The embeddings ssl-bench computed and judged (its cache of the run)."""
    files = sorted((out / rows[0]["run_id"] / "embeddings").glob("*.npz"))
    assert len(files) == 1
    return np.load(files[0])


def assert_same(ours: np.ndarray, ref: torch.Tensor) -> None:
    assert ours.shape == tuple(ref.shape)
    assert float(np.abs(ours - ref.numpy()).max()) <= 1e-5


def lightly_simclr() -> nn.Module:
    import torchvision
    from lightly.models.modules import SimCLRProjectionHead

    class SimCLR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torchvision.models.resnet18(weights=None)
            self.backbone.fc = nn.Identity()
            self.projection_head = SimCLRProjectionHead(512, 64, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x))

    torch.manual_seed(3)
    return SimCLR()


def train_lightly(model: nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    """A few steps of lightly's NT-Xent on two noisy, shifted views (BN statistics move too)."""
    from lightly.loss import NTXentLoss

    loss_fn, opt = NTXentLoss(temperature=0.5), torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    model.train()
    for i in range(steps):
        xb = x[i * 64 : (i + 1) * 64]
        v1 = adapted(xb + 0.1 * torch.randn(xb.shape, generator=g), 3, SIZE, *IMAGENET)
        v2 = adapted(torch.roll(xb, 1, dims=-1), 3, SIZE, *IMAGENET)
        loss = loss_fn(model(v1), model(v2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def save_lightning(model: nn.Module, path: Path) -> None:
    """A Lightning checkpoint's layout: the LightningModule holds the lightly model as ``model``."""
    torch.save({"epoch": 1, "global_step": 3, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "optimizer_states": [], "lr_schedulers": []}, path)


@pytest.fixture(scope="module")
def simclr_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightly") / "simclr-epoch=1.ckpt"
    model = lightly_simclr()
    train_lightly(model, eval_images())
    save_lightning(model, path)
    return model, path


# -- the five SPEC forms: ssl-bench's embeddings == a direct forward --------------------------------
@pytest.fixture(scope="module")
def simclr_eval(simclr_ckpt, tmp_path_factory):
    """``ssl-bench eval`` of the lightly checkpoint, once: (model, ckpt, out, rows, printed JSON)."""
    model, path = simclr_ckpt
    out = tmp_path_factory.mktemp("simclr-runs")
    argv = ["eval", "--encoder", "torchvision:resnet18", "--weights", str(path), "--strip-prefix", "model.backbone.",
            "--input-size", str(SIZE), "--evaluators", "knn", "--out", str(out), "--json", *CLI_SMALL]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    rows = read_rows(sorted(out.glob("*/results.jsonl")))
    return model, path, out, rows, json.loads(buf.getvalue())


@pytest.mark.slow
def test_lightly_lightning_ckpt_with_strip_prefix(simclr_eval):
    model, path, out, rows, printed = simclr_eval
    z = cached(out, rows)
    with torch.no_grad():
        assert_same(z["train_x"], model.backbone(adapted(eval_images("train"), 3, SIZE, *IMAGENET)))
        assert_same(z["test_x"], model.backbone(adapted(eval_images("test"), 3, SIZE, *IMAGENET)))
    r = rows[0]
    assert r["method"] == "external:torchvision:resnet18" and r["config"]["method_kwargs"] == {"weights": path.name}
    enc = r["encoder"]
    assert enc["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert enc["strip_prefix"] == "model.backbone." and enc["grey_to_rgb"] is True and enc["input_size"] == SIZE
    assert enc["mean"] == list(IMAGENET[0]) and enc["normalization_from"] == "imagenet"
    assert printed["knn"]["top1"] == next(r["value"] for r in rows if r["metric"] == "top1")


@pytest.mark.slow
def test_lightly_knn_agrees_with_lightly_knn_predict(simclr_eval):
    """Same features, same k and T: ssl-bench's k-NN top-1 is lightly's within 0.1 point."""
    from lightly.utils.benchmarking import knn_predict

    _, _, out, rows, _ = simclr_eval
    ours = next(r["value"] for r in rows if r["metric"] == "top1")
    k, t = rows[0]["eval_options"]["k"], rows[0]["eval_options"]["temperature"]
    z = cached(out, rows)
    bank = F.normalize(torch.from_numpy(z["train_x"]), dim=1)
    query = F.normalize(torch.from_numpy(z["test_x"]), dim=1)
    pred = knn_predict(query, bank.T, torch.from_numpy(z["train_y"]), 10, knn_k=k, knn_t=t)
    theirs = 100.0 * float((pred[:, 0] == torch.from_numpy(z["test_y"])).float().mean())
    assert abs(ours - theirs) <= 0.1, (ours, theirs)
    assert 20 < ours <= 100  # a real classifier: chance is 10


@pytest.mark.slow
def test_timm_state_dict_and_layer(tmp_path):
    import timm

    torch.manual_seed(5)
    src = timm.create_model("resnet18", pretrained=False, num_classes=10)  # its head is ignored, and recorded
    weights = tmp_path / "r18.pth"
    torch.save(src.state_dict(), weights)
    out = tmp_path / "runs"
    rows = evaluate_external("timm:resnet18", out, weights=weights, input_size=SIZE, evaluators=["knn"], **SMALL)
    src.reset_classifier(0)
    src.eval()
    with torch.no_grad():
        assert_same(cached(out, rows)["train_x"], src(adapted(eval_images(), 3, SIZE, *IMAGENET)))
    enc = rows[0]["encoder"]
    assert enc["classifier_keys_ignored"] == 2 and enc["normalization_from"] == "timm pretrained_cfg"
    # --layer layer4: its feature map averaged over positions is resnet18's pooled feature
    out2 = tmp_path / "runs2"
    rows2 = evaluate_external("timm:resnet18", out2, weights=weights, input_size=SIZE, layer="layer4",
                              evaluators=["knn"], **SMALL)
    np.testing.assert_allclose(cached(out2, rows2)["train_x"], cached(out, rows)["train_x"], atol=1e-5)
    assert rows2[0]["run_id"] != rows[0]["run_id"] and rows2[0]["encoder"]["layer"] == "layer4"


def test_hf_vit_folder_offline(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    folder = tmp_path / "tiny-vit"
    ViTModel(cfg).save_pretrained(folder)
    ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 16, "width": 16}).save_pretrained(folder)
    out = tmp_path / "runs"
    rows = evaluate_external(f"hf:{folder}", out, evaluators=["knn"], **SMALL)  # size from its config: 16
    ref = ViTModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        want = ref(pixel_values=adapted(eval_images(), 3, 16, (0.5,) * 3, (0.5,) * 3)).pooler_output
    assert_same(cached(out, rows)["train_x"], want)
    enc = rows[0]["encoder"]
    assert enc["input_size"] == 16 and enc["input_size_from"] == "hf config"
    assert enc["normalization_from"] == "preprocessor_config.json" and enc["output"] == "pooled output"
    assert rows[0]["method"] == "external:hf:tiny-vit"


def test_torchvision_random_init_is_seeded(tmp_path):
    import torchvision

    out = tmp_path / "runs"
    assert main(["eval", "--encoder", "torchvision:resnet18", "--input-size", str(SIZE), "--evaluators", "knn",
                 "--out", str(out), *CLI_SMALL]) == 0
    rows = read_rows(sorted(out.glob("*/results.jsonl")))
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    ref.fc = nn.Identity()
    with torch.no_grad():
        assert_same(cached(out, rows)["test_x"], ref.eval()(adapted(eval_images("test"), 3, SIZE, *IMAGENET)))
    assert rows[0]["config"]["method_kwargs"] == {"weights": "random-init"}


FACTORY = """
import torch
from torch import nn


def tiny_cnn():
    torch.manual_seed(11)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten())
"""


def test_factory_with_safetensors_weights(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    (tmp_path / "ext_factory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import ext_factory_mod

    src = ext_factory_mod.tiny_cnn()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1)
    src[1].running_mean.fill_(0.05)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, weights)
    out = tmp_path / "runs"
    rows = evaluate_external("ext_factory_mod:tiny_cnn", out, weights=weights, evaluators=["knn"], **SMALL)
    grey = (sum(IMAGENET[0]) / 3,), (sum(IMAGENET[1]) / 3,)  # a 1-channel encoder: the mean RGB statistics
    with torch.no_grad():
        assert_same(cached(out, rows)["train_x"], src.eval()(adapted(eval_images(), 1, 8, *grey)))
    enc = rows[0]["encoder"]
    assert enc["channels"] == 1 and enc["grey_to_rgb"] is False and enc["input_size"] is None


# -- safety and one-line errors ---------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Evil(marker)}, evil)
    assert not marker.exists()
    rc = main(["eval", "--encoder", "timm:resnet18", "--weights", str(evil), "--out", str(tmp_path / "runs"),
               *CLI_SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "refused" in err and "nothing of it was run" in err
    assert "system" in err  # the global it would have called, read from the opcodes
    assert not (tmp_path / "runs").exists()


def test_wrong_prefix_names_the_prefixes_found(simclr_ckpt, tmp_path, capsys):
    _, path = simclr_ckpt
    base = ["eval", "--encoder", "torchvision:resnet18", "--weights", str(path), "--input-size", str(SIZE),
            "--out", str(tmp_path / "runs"), *CLI_SMALL]
    assert main([*base, "--strip-prefix", "backbone."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no key starts with --strip-prefix 'backbone.'" in err
    assert "model.backbone. (" in err and "model.projection_head. (" in err
    assert main(base) == 2  # no prefix: strict loading names the first missing and unexpected keys
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "missing (first: conv1.weight" in err and "unexpected (first: model.backbone.conv1.weight" in err
    assert "model.backbone. (" in err and "--strip-prefix" in err


def test_spec_and_option_errors_are_one_line(tmp_path, capsys):
    for argv, words in (
        (["--encoder", "timm:no_such_net_zz"], "timm has no model"),
        (["--encoder", "torchvision:nope"], "torchvision has no model"),
        (["--encoder", "no_such_module_zz:f"], "cannot import"),
        (["--encoder", "resnet18"], "use timm:ARCH"),
        (["--encoder", f"hf:{tmp_path}"], "no config.json"),
        (["--encoder", "timm:resnet18", "--strip-prefix", "x."], "needs --weights"),
        (["--encoder", "timm:resnet18", "--weights", str(tmp_path / "none.pth")], "no such file"),
        (["--encoder", "timm:resnet18", "--layer", "nope"], "no such sub-module"),
    ):
        assert main(["eval", *argv, "--out", str(tmp_path / "runs"), *CLI_SMALL]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (argv, err)


# -- rows on the same table -------------------------------------------------------------------------
@pytest.mark.slow
def test_rows_of_other_weights_never_merge_and_rank_beside_baselines(tmp_path, capsys):
    import timm

    from ssl_bench.leaderboard import aggregate, load_frame
    from ssl_bench.pipeline import evaluate_baselines

    out = tmp_path / "runs"
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / f"w{seed}.pth")
        evaluate_external("timm:resnet18", out, weights=tmp_path / f"w{seed}.pth", input_size=16,
                          evaluators=["knn"], **SMALL)
    evaluate_external("timm:resnet18", out, input_size=16, evaluators=["knn"], **SMALL)
    cfg = evaluation_config("digits", "smoke", 0, N_TRAIN, N_TEST)
    evaluate_baselines(cfg, out, DATASETS.get("digits")(), ["knn"])
    table = aggregate(load_frame(out))
    subsets = f"eval_test_subset={N_TEST}, eval_train_subset={N_TRAIN}"  # not the smoke preset's
    labels = set(table["label"])
    assert {f"external:timm:resnet18 [weights=w1.pth, {subsets}]", f"external:timm:resnet18 [weights=w2.pth, {subsets}]",
            f"external:timm:resnet18 [weights=random-init, {subsets}]", f"pixels [{subsets}]",
            f"random-init [{subsets}]"} == labels
    assert (table["n"] == 1).all()  # nothing merged
    lb = tmp_path / "lb"
    assert main(["leaderboard", "--runs", str(out), "--out", str(lb)]) == 0
    md = next(lb.glob("*.md")).read_text()
    assert f"external:timm:resnet18 [weights=w1.pth, {subsets}]" in md and f"pixels [{subsets}]" in md
    capsys.readouterr()
    assert main(["compare", "--runs", str(out), f"external:timm:resnet18 [weights=w1.pth, {subsets}]",
                 f"external:timm:resnet18 [weights=w2.pth, {subsets}]"]) == 0


def test_python_api_returns_the_rows_as_a_dataframe(tmp_path):
    import ssl_bench

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    df = ssl_bench.evaluate(net, dataset="digits", evaluators=("knn", "linear"), out=tmp_path / "runs", preset="smoke",
                            eval_train_subset=N_TRAIN, eval_test_subset=N_TEST, input_size=12, progress=False)
    assert set(df["evaluator"]) == {"knn", "linear"} and df["value"].notna().all()
    on_disk = read_rows(sorted((tmp_path / "runs").glob("*/results.jsonl")))
    assert len(on_disk) == len(df) and list(df["value"]) == [r["value"] for r in on_disk]
    assert df["encoder"].iloc[0]["grey_to_rgb"] is True and df["method"].iloc[0].startswith("external:python:")


# -- eval of an ssl-bench checkpoint reads the file once --------------------------------------------
def test_eval_reads_a_checkpoint_once(tiny, runs, monkeypatch, capsys):
    from ssl_bench import checkpoint, embeddings
    from ssl_bench.trainer import train

    res = train(tiny(epochs=1, train_subset=256, eval_train_subset=256, eval_test_subset=128), runs)
    reads = []
    real = checkpoint.read_encoder

    def counted(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(checkpoint, "read_encoder", counted)
    monkeypatch.setattr(embeddings, "read_encoder", counted)
    # the checkpoint through --encoder too, as an ssl-bench SPEC: today's evaluation, same rows
    assert main(["eval", "--encoder", str(res.checkpoint), "--evaluators", "knn", "--json"]) == 0
    assert reads == [res.checkpoint]
    assert json.loads(capsys.readouterr().out)["knn"]["top1"] > 0
    assert main(["eval", "--encoder", str(res.checkpoint), "--weights", "x.pth"]) == 2
    assert "apply to --encoder SPEC, not to an ssl-bench checkpoint" in capsys.readouterr().err
