"""MPS fallback on Apple silicon (platform faked in a subprocess) and device selection."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coolchic.device import resolve_device, set_torch_threads
from coolchic.errors import DeviceError

_PROBE = """
import os, platform, sys
platform.system = lambda: {system!r}
platform.machine = lambda: {machine!r}
import coolchic
print(os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK", "<unset>"))
print("torch" in sys.modules)
"""


def _probe(system: str, machine: str, preset: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    if preset is not None:
        env["PYTORCH_ENABLE_MPS_FALLBACK"] = preset
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(system=system, machine=machine)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout.split()


def test_apple_silicon_gets_the_mps_fallback_before_torch() -> None:
    assert _probe("Darwin", "arm64") == ["1", "False"]


def test_user_choice_is_respected() -> None:
    assert _probe("Darwin", "arm64", preset="0") == ["0", "False"]


@pytest.mark.parametrize(("system", "machine"), [("Linux", "x86_64"), ("Darwin", "x86_64")])
def test_other_platforms_are_left_alone(system: str, machine: str) -> None:
    assert _probe(system, machine) == ["<unset>", "False"]


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"


def test_unavailable_explicit_devices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="sees no CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="device mps requested"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="not one of"):
        resolve_device("gpu")


def test_threads_are_set_explicitly() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
