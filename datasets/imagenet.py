"""ImageNet-1k or a class subset (ImageNet-100...) in the standard folder layout, streamed."""

from __future__ import annotations

import os
from pathlib import Path

from ssl_bench.data import Data, folder_options, streamed_folder
from ssl_bench.registry import register_dataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Files that map WordNet ids (the class folders) to readable names, in the order tried.
IMAGENET_CLASS_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")


def imagenet_class_names(base: Path, wnids: list[str]) -> dict[str, str]:
    """WordNet id -> readable name, from the first of :data:`IMAGENET_CLASS_FILES` under ``base``
    (lines ``n01440764 tench, Tinca tinca``); empty when there is none."""
    for fname in IMAGENET_CLASS_FILES:
        p = base / fname
        if p.is_file():
            names = {}
            for line in p.read_text(errors="replace").splitlines():
                wnid, _, name = line.strip().partition(" ")
                if wnid in wnids:
                    names[wnid] = name.strip() or wnid
            return names
    return {}


@register_dataset("imagenet")
def imagenet(
    root: str | os.PathLike | None = None,
    image_size: int = 224,
    channels: int = 3,
    mean: list | None = None,
    std: list | None = None,
    stats_sample: int = 1000,
) -> Data:
    """ImageNet-1k or a class subset such as ImageNet-100, in the standard layout
    ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``, streamed. Labels are the sorted
    WordNet ids (torchvision's order); ``info["class_names"]`` maps them to readable names when
    ``LOC_synset_mapping.txt`` (or ``synset_words.txt``) is in ROOT. Normalised with the usual
    ImageNet statistics unless ``mean``/``std`` are given."""
    base, test_dir = folder_options("imagenet", root, image_size, channels, mean, std, stats_sample)
    if mean is None and channels == 3:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    data = streamed_folder("imagenet", base, test_dir, image_size, channels, mean, std, stats_sample)
    data.info["class_names"] = imagenet_class_names(base, data.info["classes"])
    return data
