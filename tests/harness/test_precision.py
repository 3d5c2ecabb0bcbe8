"""Precision (fp32 / bf16 autocast) and channels_last layout of training and embedding."""
import numpy as np
import pytest
import torch

from ssl_bench import precision
from ssl_bench.backbones import SmallCNN
from ssl_bench.checkpoint import read_encoder
from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.embeddings import checkpoint_embeddings, embed_tensor, inference_copy
from ssl_bench.errors import ConfigError
from ssl_bench.trainer import train

from conftest import tiny_config

CPU = torch.device("cpu")


def test_resolve_precision_explicit_and_auto(monkeypatch):
    assert precision.resolve_precision("fp32", CPU) == "fp32"
    assert precision.resolve_precision("bf16", CPU) == "bf16"
    assert precision.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", CPU) == "fp32"
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8", CPU)


def test_config_rejects_an_unknown_precision():
    with pytest.raises(ConfigError) as e:
        RunConfig(precision="half")
    assert "unknown precision 'half'; known: auto, fp32, bf16" == str(e.value)
    # precision changes the arithmetic, so it is part of what was trained
    assert RunConfig(precision="fp32").hash() != RunConfig(precision="bf16").hash()


def test_autocast_contexts():
    with precision.autocast(CPU, "bf16"):
        y = torch.nn.functional.linear(torch.randn(4, 8), torch.randn(3, 8))
    assert y.dtype == torch.bfloat16
    with precision.autocast(CPU, "fp32"):
        y = torch.nn.functional.linear(torch.randn(4, 8), torch.randn(3, 8))
    assert y.dtype == torch.float32


def test_channels_last_embedding_equals_contiguous():
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = SmallCNN(in_channels=1).eval()
    a = embed_tensor(net, data, data.x_test[:300], CPU)
    assert precision.wants_channels_last(data.kind, data.input_shape)
    net_ref = SmallCNN(in_channels=1).eval()
    net_ref.load_state_dict(net.state_dict())
    net_ref = net_ref.to(memory_format=torch.contiguous_format)
    # the reference runs without the layout change
    with torch.no_grad():
        b = net_ref(data.normalize(data.to_float(data.x_test[:300]))).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not precision.wants_channels_last("vector", (2,))


def test_inference_copy_folds_batchnorm_into_convolutions_and_keeps_the_outputs():
    """Embedding runs on a copy with each eval-mode BatchNorm folded into the convolution before
    it: the same embeddings within float rounding, trained BN statistics included, and the
    model itself (which the model evaluators fine-tune) untouched."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = precision.model_to_layout(SmallCNN(in_channels=1), True)
    net.train()
    with torch.no_grad():  # BN running statistics and affine parameters away from their init
        for _ in range(3):
            net(data.normalize(data.to_float(data.x_train[:256])) * 2 + 0.3)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = inference_copy(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n_bn == 3 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert fast.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    a = embed_tensor(net, data, data.x_test[:300], CPU)
    b = embed_tensor(fast, data, data.x_test[:300], CPU)
    assert np.abs(a).max() > 0.1
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_bf16_training_on_cpu_is_deterministic_and_recorded(tmp_path):
    cfg = tiny_config(method="simclr", dataset="digits", epochs=1, batch_size=64, train_subset=256,
                      precision="bf16")
    r1 = train(cfg, tmp_path / "a")
    r2 = train(cfg, tmp_path / "b")
    w1, meta = read_encoder(r1.checkpoint)
    w2, _ = read_encoder(r2.checkpoint)
    assert meta["precision"] == "bf16" and meta["config"]["precision"] == "bf16"
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    log = (r1.run_dir / "train_log.csv").read_text().splitlines()
    loss = float(log[1].split(",")[log[0].split(",").index("loss")])
    assert np.isfinite(loss) and loss > 0


def test_bf16_embeddings_are_close_to_fp32_of_the_same_weights(tmp_path):
    cfg = tiny_config(method="vicreg", dataset="digits", epochs=1, batch_size=64, train_subset=256,
                      precision="bf16")
    res = train(cfg, tmp_path)
    data = load_dataset("digits").subset(400, 200, seed=1)
    emb16, _, _, _, method = checkpoint_embeddings(res.checkpoint, data, CPU)
    emb32 = embed_tensor(method.encode, data, data.x_train, CPU, precision="fp32")
    assert emb16.train_x.dtype == np.float32
    a, b = emb16.train_x, emb32
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.99, cos.min()
    assert np.abs(a - b).max() > 0  # it really ran in bf16
