"""benchmarks/pointwise_mlp.py: its checksum can tell two kernels apart only if it is stable."""

from __future__ import annotations

import torch

from tests.conftest import load_benchmark


def test_the_checksum_is_the_same_on_one_and_two_threads() -> None:
    bench = load_benchmark("pointwise_mlp.py")
    before = torch.get_num_threads()
    try:
        one = bench.measure(64, 96, threads=1, repeats=1)
        two = bench.measure(64, 96, threads=2, repeats=1)
    finally:
        torch.set_num_threads(before)
    assert one[2] == two[2]
    assert one[2] > 0
    assert min(one[:2] + two[:2]) > 0
