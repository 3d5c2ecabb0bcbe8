"""Embedding extraction: the cnn-small backbone over 10,000 Fashion-MNIST images (batch 1024)."""
import torch

from benchutil import per_second
from ssl_bench.backbones import SmallCNN
from ssl_bench.embeddings import embed_tensor

N = 10_000


def test_embed_extraction(benchmark, fmnist):
    benchmark.group = "embed"
    torch.manual_seed(0)
    net = SmallCNN(1).eval()
    x = fmnist.x_train[:N]
    z = benchmark.pedantic(lambda: embed_tensor(net, fmnist, x, torch.device("cpu")), rounds=3, iterations=1,
                           warmup_rounds=0)
    assert z.shape == (N, 128)
    per_second(benchmark, N)
