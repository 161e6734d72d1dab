"""Latent grid sizes and the latent parameter container."""

from __future__ import annotations

import pytest
import torch

from coolchic.model.latents import LatentGrids, grid_shapes, n_latents


def test_grid_shapes_use_ceil_for_odd_sizes() -> None:
    assert grid_shapes(34, 66, 7) == [(34, 66), (17, 33), (9, 17), (5, 9), (3, 5), (2, 3), (1, 2)]
    assert grid_shapes(128, 192, 7)[-1] == (2, 3)


def test_tiny_images_keep_one_by_one_grids() -> None:
    assert grid_shapes(1, 1, 7) == [(1, 1)] * 7
    assert grid_shapes(3, 1, 4) == [(3, 1), (2, 1), (1, 1), (1, 1)]
    assert grid_shapes(64, 64, 10)[-1] == (1, 1)


def test_latent_count_is_about_four_thirds() -> None:
    assert n_latents(512, 768, 7) == sum(h * w for h, w in grid_shapes(512, 768, 7))
    assert n_latents(512, 768, 7) / (512 * 768) == pytest.approx(4 / 3, rel=1e-3)


@pytest.mark.parametrize(("height", "width", "n_grids"), [(0, 4, 7), (4, 0, 7), (4, 4, 0)])
def test_bad_sizes_raise(height: int, width: int, n_grids: int) -> None:
    with pytest.raises(ValueError):
        grid_shapes(height, width, n_grids)


def test_latent_grids_start_at_zero_and_scale_by_the_gain() -> None:
    grids = LatentGrids(34, 66, 7, gain=16.0)
    assert [tuple(p.shape) for p in grids.grids] == [
        (1, 1, h, w) for h, w in grid_shapes(34, 66, 7)
    ]
    assert all(torch.count_nonzero(p) == 0 for p in grids.grids)
    with torch.no_grad():
        for index, p in enumerate(grids.grids):
            p.fill_(index + 0.5)
    flat = grids.scaled_flat()
    assert flat.shape == (grids.n_latents,)
    parts = grids.split(flat)
    for index, part in enumerate(parts):
        assert part.shape == grids.grids[index].shape
        assert torch.all(part == 16.0 * (index + 0.5))


def test_check_latents_rejects_wrong_counts_and_shapes() -> None:
    grids = LatentGrids(5, 3, 3, gain=16.0)
    good = [torch.zeros(1, 1, h, w) for h, w in grids.shapes]
    grids.check_latents(good)
    with pytest.raises(ValueError, match="expected 3 grids"):
        grids.check_latents(good[:2])
    with pytest.raises(ValueError, match=r"latents\[1\]"):
        grids.check_latents([good[0], torch.zeros(1, 1, 2, 3), good[2]])
