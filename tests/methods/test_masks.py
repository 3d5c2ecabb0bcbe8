"""I-JEPA's multi-block masks (views.multiblock_masks): the context keeps >= min_keep patches."""
import pytest
import torch

from ssl_bench.errors import ConfigError
from ssl_bench.views import multiblock_masks


@pytest.mark.parametrize("grid,min_keep", [((4, 4), 4), ((7, 7), 10)])
def test_context_keeps_min_keep_patches_over_200_batches(grid, min_keep):
    # before the fix the context was cut to the batch minimum: on the 4 x 4 grid (7-px patches on
    # 28 x 28) 60 % of the batches kept only 1-3 context patches
    g = torch.Generator().manual_seed(0)
    sizes, overlap, total = [], 0, 0
    for _ in range(200):
        kw = {} if min_keep == 4 else {"min_keep": min_keep}  # 4: the default
        ctx, tgt = multiblock_masks(32, grid, g, num_targets=4, **kw)
        assert ctx.shape[0] == 32 and tgt.shape[:2] == (32, 4)
        sizes.append(ctx.shape[1])
        for c, t in zip(ctx, tgt):
            assert len(set(c.tolist())) == len(c)  # no duplicates
            overlap += len(set(c.tolist()) & set(t.flatten().tolist()))
            total += len(c)
    assert min(sizes) >= min_keep, min(sizes)
    if grid == (7, 7):  # on a 49-token grid the targets almost never have to be dropped
        assert overlap / total < 0.01


def test_min_keep_outside_the_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="min_keep"):
        multiblock_masks(2, (4, 4), min_keep=17)


def _loop_multiblock_masks(batch, grid, g, num_targets=4, min_keep=4, timeout=20):
    """The former per-sample loop (the reference collator's structure), kept as the reference that
    the batched drawing must match in distribution."""
    from ssl_bench.views import _block

    gh, gw = grid
    th, tw = _block(gh, gw, (0.15, 0.2), (0.75, 1.5), g)
    ch, cw = _block(gh, gw, (0.85, 1.0), (1.0, 1.0), g)
    need = min(min_keep, ch * cw)
    ar = torch.arange(gh * gw).view(gh, gw)
    targets, contexts = [], []
    for _ in range(batch):
        blocks, covers = [], []
        for _ in range(num_targets):
            y = int(torch.randint(0, gh - th + 1, (1,), generator=g))
            x = int(torch.randint(0, gw - tw + 1, (1,), generator=g))
            blocks.append(ar[y : y + th, x : x + tw].flatten())
            cover = torch.zeros(gh, gw, dtype=torch.bool)
            cover[y : y + th, x : x + tw] = True
            covers.append(cover)
        targets.append(torch.stack(blocks))
        dropped, fails = 0, 0
        while True:
            y = int(torch.randint(0, gh - ch + 1, (1,), generator=g))
            x = int(torch.randint(0, gw - cw + 1, (1,), generator=g))
            free = torch.zeros(gh, gw, dtype=torch.bool)
            free[y : y + ch, x : x + cw] = True
            for cover in covers[: max(num_targets - dropped, 0)]:
                free &= ~cover
            if int(free.sum()) >= need:
                break
            fails += 1
            if fails == timeout:
                dropped, fails = dropped + 1, 0
        contexts.append(free.flatten().nonzero().flatten())
    nc = min(len(c) for c in contexts)
    ctx = torch.stack([c[torch.randperm(len(c), generator=g)[:nc].sort().values] for c in contexts])
    return ctx, torch.stack(targets)


def _mask_stats(fn, grid, seed, batches=200, b=32):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    ctx_freq, tgt_freq, sizes, overlap, total = torch.zeros(n), torch.zeros(n), [], 0, 0
    for _ in range(batches):
        c, t = fn(b, grid, g, num_targets=4)
        sizes.append(c.shape[1])
        ctx_freq += torch.bincount(c.flatten(), minlength=n)
        tgt_freq += torch.bincount(t.flatten(), minlength=n)
        for ci, ti in zip(c, t):
            overlap += len(set(ci.tolist()) & set(ti.flatten().tolist()))
            total += len(ci)
    # per-patch frequencies relative to uniform (1.0 everywhere for a uniform choice)
    return ctx_freq / ctx_freq.sum() * n, tgt_freq / tgt_freq.sum() * n, sum(sizes) / len(sizes), overlap / total


@pytest.mark.parametrize("grid", [(4, 4), (7, 7)])
def test_batched_masks_match_the_per_sample_loop_in_distribution(grid):
    # measured: two seeds of the loop differ by <= 0.07 in the relative per-patch frequencies,
    # 0.2-0.5 in the mean context size and 0.002 in the overlap rate; the batched drawing's
    # differences from the loop are of the same size
    new_c, new_t, new_n, new_ov = _mask_stats(multiblock_masks, grid, seed=1)
    old_c, old_t, old_n, old_ov = _mask_stats(_loop_multiblock_masks, grid, seed=0)
    assert (new_c - old_c).abs().max() < 0.15
    assert (new_t - old_t).abs().max() < 0.15
    assert abs(new_n - old_n) < (0.6 if grid == (4, 4) else 1.5)
    assert abs(new_ov - old_ov) < 0.01
    # the targets are th x tw rectangles, row-major, inside the grid
    g = torch.Generator().manual_seed(2)
    _, tgt = multiblock_masks(16, grid, g)
    gw = grid[1]
    for block in tgt.reshape(-1, tgt.shape[-1]):
        r, c = block // gw, block % gw
        assert torch.equal(block, block.sort().values)
        h, w = int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)
        assert h * w == len(block)
