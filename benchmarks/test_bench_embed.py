"""Embedding extraction: the cnn-small backbone over 10,000 Fashion-MNIST images (batch 1024),
in the three CPU modes of :mod:`ssl_bench.precision` (the harness uses channels_last and the
config's precision: bf16 where the CPU has native bf16)."""
import pytest
import torch

from benchutil import per_second
from ssl_bench.backbones import SmallCNN
from ssl_bench.embeddings import embed_tensor

N = 10_000


@pytest.mark.parametrize("mode", ["fp32-nchw", "fp32-channels_last", "bf16-channels_last"])
def test_embed_extraction(benchmark, fmnist, mode, monkeypatch):
    benchmark.group = "embed"
    precision, layout = mode.split("-", 1)
    if layout == "nchw":  # what embed_tensor did before channels_last
        monkeypatch.setattr("ssl_bench.precision.wants_channels_last", lambda kind, shape: False)
    torch.manual_seed(0)
    net = SmallCNN(1).eval()
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    x = fmnist.x_train[:N]
    z = benchmark.pedantic(lambda: embed_tensor(net, fmnist, x, torch.device("cpu"), precision=precision),
                           rounds=3, iterations=1, warmup_rounds=1)
    assert z.shape == (N, 128)
    per_second(benchmark, N)
