"""Compiled element-wise chains: same values and gradients as eager, and a safe fallback."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from coolchic.model import fused
from coolchic.model.arm import (
    ContextGather,
    InterFeatureContext,
    _with_context_planes,
    rate_from_raw,
)
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.model.fused import fusable
from coolchic.model.latents import grid_shapes
from coolchic.model.layout import coded_grid_shapes, grid_resolutions, ifce_sources
from coolchic.model.quantizer import QuantizerSettings, _noisy_softround
from coolchic.model.upsampling import Upsampling, _separable_stack
from coolchic.train.recipes import ALL_MODULES, NETWORKS
from coolchic.train.trainer import make_optimizer, select_trained


def _values_and_gradients(
    function: fused._Fusable, inputs: list[torch.Tensor], force: bool, *constants: object
) -> list[torch.Tensor]:
    for tensor in inputs:
        tensor.grad = None
    out = function(*inputs, *constants, force_compile=force)
    weight = torch.linspace(-1.0, 1.0, out.numel()).view(out.shape)
    (out * weight).sum().backward()
    return [out.detach(), *(tensor.grad.clone() for tensor in inputs)]


def _assert_compiled_equals_eager(
    function: fused._Fusable, inputs: list[torch.Tensor], *constants: object
) -> None:
    eager = _values_and_gradients(function, inputs, False, *constants)
    compiled = _values_and_gradients(function, inputs, True, *constants)
    again = _values_and_gradients(function, inputs, True, *constants)
    for a, b, c in zip(eager, compiled, again, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        assert torch.equal(b, c)  # the compiled kernel is deterministic


def test_rate_compiled_equals_eager() -> None:
    generator = torch.Generator().manual_seed(0)
    y = (3 * torch.randn(500, generator=generator)).requires_grad_()
    mu = torch.randn(500, generator=generator).requires_grad_()
    raw = (4 + 2 * torch.randn(500, generator=generator)).requires_grad_()
    _assert_compiled_equals_eager(rate_from_raw, [y, mu, raw])


def test_noisy_softround_compiled_equals_eager() -> None:
    generator = torch.Generator().manual_seed(1)
    x = (5 * torch.randn(400, generator=generator)).requires_grad_()
    noise = 0.2 * torch.randn(400, generator=generator)
    temperature = torch.tensor(0.3)
    eager = _noisy_softround(x, noise, temperature)
    compiled = _noisy_softround(x, noise, temperature, force_compile=True)
    torch.testing.assert_close(compiled, eager)
    # Another temperature reuses the kernel (a tensor argument, not a constant).
    other = _noisy_softround(x, noise, torch.tensor(0.1), force_compile=True)
    torch.testing.assert_close(other, _noisy_softround(x, noise, torch.tensor(0.1)))


def test_upsampling_stack_compiled_equals_eager() -> None:
    torch.manual_seed(0)
    up = Upsampling(5, kernel=8, preconcat_kernel=7)
    with torch.no_grad():
        up.transposed_half.add_(0.1 * torch.randn_like(up.transposed_half))
        assert up.preconcat_half is not None
        up.preconcat_half.add_(0.1 * torch.randn_like(up.preconcat_half))
    grids = [torch.randn(1, 1, h, w, requires_grad=True) for h, w in grid_shapes(37, 29, 5)]
    taps = up.transposed_half[:, up._taps_index].detach().requires_grad_()
    preconcat = up.preconcat_half[:, up._preconcat_index].detach().requires_grad_()
    inputs = [grids[0], *grids[1:], taps, preconcat]

    def stack(finest: torch.Tensor, *rest: torch.Tensor, force_compile: bool) -> torch.Tensor:
        *coarser, taps, preconcat = rest
        return _separable_stack(
            finest, list(coarser), taps, preconcat, up._poly, force_compile=force_compile
        )

    _assert_compiled_equals_eager(stack, inputs)  # type: ignore[arg-type]


def test_a_failing_compiler_falls_back_to_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_compile(function: object, **_: object) -> object:
        def fail(*_args: object) -> None:
            raise RuntimeError("no C++ compiler found")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)

    @fusable
    def double(x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="coolchic.model.fused"):
        assert torch.equal(double(torch.ones(3), force_compile=True), torch.full((3,), 2.0))
        assert torch.equal(double(torch.ones(3), force_compile=True), torch.full((3,), 2.0))
    warnings = [r for r in caplog.records if "could not compile double" in r.getMessage()]
    assert len(warnings) == 1  # said once, then eager for good


def test_compiled_kernels_are_kept_beside_coolchics_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in torch's default under /tmp, which a reboot empties (minutes of builds a size)."""
    monkeypatch.delenv(fused.COMPILE_CACHE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seen: list[str | None] = []
    monkeypatch.setattr(
        torch,
        "compile",
        lambda function, **_: seen.append(os.environ.get(fused.COMPILE_CACHE_VARIABLE)) or function,
    )

    @fusable
    def triple(x: torch.Tensor) -> torch.Tensor:
        return 3 * x

    triple(torch.ones(3), force_compile=True)
    folder = fused.compile_cache_dir()
    assert folder.parent == tmp_path / "coolchic" / "torch-compile"
    assert seen == [str(folder)]  # set before the build
    assert folder.is_dir()


def test_each_cpu_gets_its_own_compile_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home folder shared by machines with other CPUs must not hand them these kernels."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    here = fused.compile_cache_dir()
    monkeypatch.setattr(fused, "cpu_signature", lambda: "flags : sse2 avx2")
    assert fused.compile_cache_dir() != here
    assert fused.compile_cache_dir().parent == here.parent


def test_a_compile_cache_the_user_chose_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fused.COMPILE_CACHE_VARIABLE, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fused.use_persistent_cache()
    assert os.environ[fused.COMPILE_CACHE_VARIABLE] == str(tmp_path / "mine")
    assert not (tmp_path / "xdg").exists()


def test_an_unwritable_cache_folder_leaves_torchs_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.delenv(fused.COMPILE_CACHE_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir under a file fails
    fused.use_persistent_cache()
    assert fused.COMPILE_CACHE_VARIABLE not in os.environ


def test_no_home_folder_leaves_torchs_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv(fused.COMPILE_CACHE_VARIABLE, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    fused.use_persistent_cache()  # no error: the build goes on with torch's default
    assert fused.COMPILE_CACHE_VARIABLE not in os.environ


def test_small_inputs_and_evaluations_stay_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda function, **_: calls.append(function) or function)

    @fusable
    def square(x: torch.Tensor) -> torch.Tensor:
        return x * x

    square(torch.ones(10, requires_grad=True))
    assert calls == []
    large = torch.ones(fused.FUSE_MIN_ELEMENTS, requires_grad=True)
    with torch.no_grad():  # evaluations
        square(large)
    assert calls == []
    square(large)
    assert len(calls) == 1
    square(torch.ones(fused.FUSE_MIN_ELEMENTS))  # the networks-only phase: no new threshold
    assert len(calls) == 1  # the same compiled function serves both


def test_as_compiled_input_marks_only_large_training_latents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    large = torch.round(torch.linspace(-3, 3, fused.FUSE_MIN_ELEMENTS))
    marked = fused.as_compiled_input(large)
    assert marked.requires_grad and marked.is_leaf
    assert torch.equal(marked.detach(), large)
    small = torch.zeros(fused.FUSE_MIN_ELEMENTS - 1)
    assert fused.as_compiled_input(small) is small  # eager: an unread gradient costs time
    with torch.no_grad():
        assert fused.as_compiled_input(large) is large  # evaluations
    trained = large.clone().requires_grad_()
    assert fused.as_compiled_input(trained) is trained  # the main phase
    monkeypatch.setenv("COOLCHIC_COMPILE", "0")
    assert fused.as_compiled_input(large) is large


def _requires_grad_pattern(args: tuple[object, ...]) -> tuple[bool, ...]:
    flat: list[bool] = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            flat.append(arg.requires_grad)
        elif isinstance(arg, list):
            flat.extend(_requires_grad_pattern(tuple(arg)))
        elif isinstance(arg, torch.nn.Module):
            flat.extend(p.requires_grad for p in arg.parameters())
    return tuple(flat)


def test_the_networks_only_phase_runs_the_main_phase_graphs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compiled graphs are specialised on which inputs take a gradient: every chain of a
    networks-only step must see the pattern of the main phase's step, or it builds anew."""
    seen: dict[str, set[tuple[bool, ...]]] = {}

    def recording_compile(function: Callable[..., torch.Tensor], **_: object) -> object:
        def run(*args: object) -> torch.Tensor:
            seen.setdefault(function.__name__, set()).add(_requires_grad_pattern(args))
            return function(*args)

        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    monkeypatch.setattr(fused, "FUSE_MIN_ELEMENTS", 100)  # this tiny frame counts as large
    for function in (_noisy_softround, rate_from_raw, _with_context_planes, _separable_stack):
        monkeypatch.setattr(function, "compiled", None)
        monkeypatch.setattr(function, "failed", False)
    config = ModelConfig(
        n_ctx_rowcol=2,
        arm_hidden=(8,),
        synthesis=parse_synthesis("8-1-linear-relu,3-1-linear-none"),
        ifce_features=2,
        hyper_grids=3,
    )
    model = CoolChicModel(config, 24, 32)
    target = torch.rand(1, 3, 24, 32)
    generator = torch.Generator().manual_seed(0)

    def step(modules: tuple[str, ...], quantizer: QuantizerSettings) -> None:
        networks, parameters = select_trained(model, modules)
        optimizer = make_optimizer(networks, parameters, 1e-3)
        optimizer.zero_grad(set_to_none=True)
        output = model(quantizer=quantizer, generator=generator)
        (F.mse_loss(output.x_hat, target) + 1e-3 * output.rate_bits).backward()
        optimizer.step()

    step(ALL_MODULES, QuantizerSettings(kind="softround", noise="gaussian", noise_parameter=0.2))
    main_phase = {name: set(patterns) for name, patterns in seen.items()}
    assert set(main_phase) == {
        "_noisy_softround",
        "rate_from_raw",
        "_with_context_planes",
        "_separable_stack",
    }
    latents = model.latents.scaled_flat().detach().clone()
    step(NETWORKS, QuantizerSettings(kind="hardround"))
    assert seen == main_phase
    assert torch.equal(model.latents.scaled_flat().detach(), latents)  # they stay fixed


def test_compilation_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOLCHIC_COMPILE", "0")
    monkeypatch.setattr(torch, "compile", lambda *_a, **_k: pytest.fail("compiled"))

    @fusable
    def negate(x: torch.Tensor) -> torch.Tensor:
        return -x

    assert torch.equal(negate(torch.ones(2), force_compile=True), -torch.ones(2))


def test_context_planes_with_the_inter_feature_context_compiled_equal_eager() -> None:
    """The layout input (latents, then the IFCE's rounded features): values, the latents'
    gradient and the feature maps' gradients."""
    shapes = coded_grid_shapes(37, 29, 5, 2)
    gather = ContextGather(shapes, 2, n_coarser=2)
    ifce = InterFeatureContext(grid_resolutions(5, 2), ifce_sources(5, 2), 2)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in ifce.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    flat = (4 * torch.randn(gather.n_total, generator=generator)).requires_grad_()
    leaves = [flat, *ifce.parameters()]

    def run(force: bool) -> list[torch.Tensor]:
        for leaf in leaves:
            leaf.grad = None
        out = _with_context_planes(flat, gather, ifce, force_compile=force)
        weight = torch.linspace(-1.0, 1.0, out.numel())
        (out * weight).sum().backward()
        return [out.detach(), *(leaf.grad.clone() for leaf in leaves)]

    for eager, compiled in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
