"""View generation: ssl-bench's batched tensor views vs per-image torchvision (PIL) transforms
of the same recipe (what a DataLoader worker does per image), two views of 256 images."""
import pytest
import torch

from benchutil import BATCH, per_second
from ssl_bench.views import ImageAugment, MultiView, view_generator


def test_views_batched(benchmark, fmnist):
    benchmark.group = "views"
    views = MultiView(ImageAugment(), n=2)
    x = fmnist.x_train[:BATCH]
    out = benchmark.pedantic(lambda: views(fmnist.to_float(x), view_generator(0, 0, "cpu")), rounds=10,
                             iterations=1, warmup_rounds=1)
    assert len(out) == 2 and out[0].shape == (BATCH, 1, 28, 28)
    per_second(benchmark, BATCH)


def test_views_torchvision_per_image(benchmark, fmnist):
    import torchvision.transforms as T
    from PIL import Image

    benchmark.group = "views"
    view = T.Compose([T.RandomResizedCrop(28, scale=(0.3, 1.0), antialias=True), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8), T.ToTensor()])
    imgs = [Image.fromarray(a[0], mode="L") for a in fmnist.x_train[:BATCH].numpy()]

    def run():
        return [torch.stack([view(im) for im in imgs]) for _ in range(2)]

    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert out[0].shape == (BATCH, 1, 28, 28)
    per_second(benchmark, BATCH)
