"""Shared helpers: tiny YUV/PNG files written on disk for each test."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from coolchic.io import Frame
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.train.loss import Target

#: The files that take longest (real daemons, a Dask cluster, many encodes), longest first,
#: run before the others: with ``--dist loadfile`` a worker takes whole files in collection
#: order, and a long file that came last would leave the other worker idle for minutes.
LONGEST_FILES = (
    "test_watch.py",
    "test_codec.py",
    "test_executors_dask.py",
    "test_watch_reliability.py",
    "test_watch_hostile.py",
    "test_batch.py",
    "test_resume.py",
    "test_train_checkpoint.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(script: str) -> ModuleType:
    """Import ``benchmarks/<script>`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"{Path(script).stem}_benchmark", BENCHMARKS / script
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def yuv420_planes(
    width: int, height: int, bit_depth: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random integer planes (Y at WxH, U and V at W/2 x H/2) in the range of the bit depth."""
    rng = np.random.default_rng(seed)
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
    y = rng.integers(0, peak + 1, (height, width)).astype(dtype)
    u = rng.integers(0, peak + 1, (height // 2, width // 2)).astype(dtype)
    v = rng.integers(0, peak + 1, (height // 2, width // 2)).astype(dtype)
    return y, u, v


def noise_rgb_target(seed: int, height: int = 24, width: int = 32) -> Target:
    """An 8-bit RGB picture of uniform noise as a training target: nothing in it is cheap to
    code, so every coding decision shows in the cost."""
    rng = np.random.default_rng(seed)
    planes = tuple(rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(3))
    return Target.from_frame(Frame.from_integer_planes(planes, fmt="rgb", bit_depth=8))


#: A decoder that trains in about a second on :func:`noise_rgb_target`'s picture.
TINY_DECODER = ModelConfig(
    n_ctx_rowcol=1,
    arm_hidden=(4,),
    synthesis=parse_synthesis("4-1-linear-relu,X-1-linear-none"),
)


def planes_bytes(planes: tuple[np.ndarray, ...]) -> bytes:
    return b"".join(np.ascontiguousarray(p).tobytes() for p in planes)


MakeYuv = Callable[..., Path]


@pytest.fixture
def make_yuv(tmp_path: Path) -> MakeYuv:
    """Write a YUV 4:2:0 file of ``frames`` random frames and return its path."""

    def _make(
        name: str = "clip_16x8_01p_yuv420_8b.yuv",
        *,
        width: int = 16,
        height: int = 8,
        bit_depth: int = 8,
        frames: int = 1,
        extra: bytes = b"",
    ) -> Path:
        path = tmp_path / name
        data = b"".join(
            planes_bytes(yuv420_planes(width, height, bit_depth, seed=k)) for k in range(frames)
        )
        path.write_bytes(data + extra)
        return path

    return _make


@pytest.fixture(autouse=True)
def _reset_coolchic_logging():
    """The CLI installs its own handlers on the ``coolchic`` logger; undo that between tests."""
    yield
    import logging

    logger = logging.getLogger("coolchic")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def _one_torch_thread_per_test_worker():
    """Under pytest-xdist the workers share the cores: a second torch thread in each would only
    oversubscribe them (a tiny encode then runs several times slower). Tests that need two
    threads set them and put the count back; this puts it back to one for the next test."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    yield


@pytest.fixture
def daemon(tmp_path: Path):
    """Makes ``coolchic watch`` processes under ``tmp_path``; killed at the end of the test."""
    from tests.daemon_harness import Daemon

    instances: list[Daemon] = []

    def make(*extra: str) -> Daemon:
        instance = Daemon(tmp_path, *extra)
        instances.append(instance)
        return instance

    yield make
    for instance in instances:
        instance.kill()
