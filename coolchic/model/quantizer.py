"""Training-time proxies for the quantisation of the latents.

At inference (and in the bitstream) a latent is ``round(g · y)``. ``round`` has a zero
derivative almost everywhere, so training replaces it by a differentiable proxy:

* ``"softround"`` (C3, Kim et al. 2023, arXiv 2312.02753; Cool-chic v3.0+):
  ``sr(sr(x, t) + n, t)`` with ``sr(x, t) = ⌊x⌋ + ½·tanh(Δ/t)/tanh(1/(2t)) + ½``,
  ``Δ = x − ⌊x⌋ − ½``. t → 0 gives round, t → ∞ gives identity.
* ``"softround_alone"``: ``sr(x, t)`` (no noise).
* ``"noise"``: ``x + n`` (Cool-chic v1 first phase; C3's ``none`` mode).
* ``"ste"``: forward ``round(x)``, backward ``d sr(x, t)/dx`` (v3.0+).
* ``"ste_v2"``: forward ``round(x)``, backward ``grad × ste_derivative`` (v2: 0.01).
* ``"noise_v2"``: forward ``x + U(−½, ½)``, backward ``grad × 100`` (v2 noise phase).
* ``"hardround"``: ``round(x)`` with no gradient path to ``x`` at all (v5 last phase: only the
  networks adapt). The latents then get ``grad is None``, so an optimiser leaves them alone
  instead of moving them with stale momentum.
* ``"none"``: identity (no quantisation), for debugging.

The noise ``n`` is ``"uniform"`` ``U(−½, ½)``, ``"kumaraswamy"`` with parameter ``a ≥ 1``
(``a = 1`` is uniform, larger is peakier around 0), or ``"gaussian"`` ``σ·N(0, 1)``
(:func:`gaussian_noise`).

Forward values of the rounding modes are exactly integers (the straight-through tricks add an
exact zero, ``s − s.detach()``, rather than ``round(x) − s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, assert_never, get_args

import torch
from torch import Tensor

from coolchic.model.fused import fusable
from coolchic.model.native import noise_kernel
from coolchic.model.ordered import WORKERS

__all__ = [
    "INFERENCE",
    "V2_NOISE_GRADIENT_SCALE",
    "V2_STE_DERIVATIVE",
    "NoiseKind",
    "QuantizerKind",
    "QuantizerSettings",
    "gaussian_noise",
    "kumaraswamy_noise",
    "quantize",
    "sample_noise",
    "softround",
]

QuantizerKind = Literal[
    "softround", "softround_alone", "noise", "ste", "ste_v2", "noise_v2", "hardround", "none"
]
NoiseKind = Literal["uniform", "kumaraswamy", "gaussian"]

_QUANTIZER_KINDS: tuple[str, ...] = get_args(QuantizerKind)
_NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)

#: Values per thread hand-out of :func:`gaussian_noise` (1 MB of float32).
NOISE_CHUNK = 1 << 18
#: Cool-chic v2 ``ste_derivative``: the STE backward multiplies the gradient by this constant.
V2_STE_DERIVATIVE = 0.01
#: Cool-chic v2 noise phase: the backward multiplies the gradient by this constant.
V2_NOISE_GRADIENT_SCALE = 100.0


def _tanh_of(value: float | Tensor) -> float | Tensor:
    return torch.tanh(value) if isinstance(value, Tensor) else math.tanh(value)


def softround(x: Tensor, temperature: float | Tensor) -> Tensor:
    """Soft rounding ``sr(x, t) = ⌊x⌋ + ½·tanh(Δ/t)/tanh(1/(2t)) + ½``, ``Δ = x − ⌊x⌋ − ½``.

    Agrees with ``x`` at integers and half-integers; ``t → 0`` tends to ``round(x)``,
    ``t → ∞`` to ``x``.

    Args:
        x: float tensor of any shape and range.
        temperature: t > 0, a float or a 0-d tensor on ``x``'s device.

    Returns:
        Tensor shaped like ``x``, differentiable in ``x``.
    """
    floor = torch.floor(x).detach()
    centre = floor + 0.5
    inv_t = 1.0 / temperature
    half_over_tanh = 0.5 / _tanh_of(0.5 * inv_t)
    return centre + torch.tanh((x - centre) * inv_t) * half_over_tanh


@fusable
def _noisy_softround(x: Tensor, noise: Tensor, temperature: Tensor) -> Tensor:
    """``sr(sr(x, t) + noise, t)``, one fused kernel on large inputs (:mod:`.fused`)."""
    return softround(softround(x, temperature) + noise, temperature)


def kumaraswamy_noise(
    shape: torch.Size | tuple[int, ...],
    a: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Kumaraswamy noise in ``[−½, ½)`` with mode 0 (C3).

    ``u ~ U(0, 1)``, ``b = (2^a·(a − 1) + 1)/a``, ``n = (1 − (1 − u)^{1/b})^{1/a} − ½``;
    ``a = 1`` is ``U(−½, ½)``, larger ``a`` concentrates the noise around 0.

    Raises:
        ValueError: ``a < 1``.
    """
    if not (math.isfinite(a) and a >= 1.0):
        raise ValueError(f"kumaraswamy parameter a: expected a finite number >= 1, found {a}")
    b = (2.0**a * (a - 1.0) + 1.0) / a
    u = torch.rand(shape, dtype=dtype, device=device, generator=generator)
    return (1.0 - (1.0 - u).pow(1.0 / b)).pow(1.0 / a) - 0.5


def gaussian_noise(
    shape: torch.Size | tuple[int, ...],
    sigma: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``σ·N(0, 1)`` noise: the C kernel's counter-based stream for float32 on the CPU.

    Every training step draws one value per latent; at 1920x1080 ``torch.randn`` took 12.6 ms
    of a 346 ms step on a 2-core Zen 2 host, the kernel 4 ms on one thread, and the tensor is
    split between the worker threads (BENCHMARKS.md, 2026-12-06 06:10). Two seeds drawn from
    ``generator`` pick the stream; each value depends only on them and its index, so the
    noise is the same with any thread count. Elsewhere (another dtype or device, or no C
    compiler) it is ``torch.randn`` scaled by ``σ``.
    """
    kernel = noise_kernel()
    on_cpu = torch.device(device if device is not None else "cpu").type == "cpu"
    if kernel is None or dtype != torch.float32 or not on_cpu:
        normal = torch.randn(shape, dtype=dtype, device=device, generator=generator)
        return normal * sigma
    seed_a, seed_b = torch.randint(0, 1 << 32, (2,), generator=generator).tolist()
    out = torch.empty(shape, dtype=dtype)
    address, total, size = out.data_ptr(), out.numel(), out.element_size()
    step = NOISE_CHUNK - NOISE_CHUNK % kernel.block

    def fill(start: int) -> None:
        count = min(step, total - start)
        kernel.gaussian(address + size * start, start, count, seed_a, seed_b, sigma)

    WORKERS.map(range(0, total, step), fill, torch_ops=False)
    return out


def sample_noise(
    x: Tensor,
    *,
    noise: NoiseKind,
    noise_parameter: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noise shaped like ``x`` (dtype and device of ``x``), no gradient.

    Args:
        x: reference tensor.
        noise: ``"uniform"`` (``U(−½, ½)``, parameter ignored), ``"kumaraswamy"`` (parameter
            ``a ≥ 1``), ``"gaussian"`` (parameter ``σ ≥ 0``).
        noise_parameter: see ``noise``.
        generator: optional random generator (on ``x``'s device) for reproducibility.
    """
    match noise:
        case "uniform":
            return torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator) - 0.5
        case "kumaraswamy":
            return kumaraswamy_noise(
                x.shape, noise_parameter, dtype=x.dtype, device=x.device, generator=generator
            )
        case "gaussian":
            return gaussian_noise(
                x.shape, noise_parameter, dtype=x.dtype, device=x.device, generator=generator
            )
        case _:
            assert_never(noise)


def _straight_through(forward_value: Tensor, surrogate: Tensor) -> Tensor:
    """``forward_value`` exactly in the forward pass, the gradient of ``surrogate`` backward."""
    return forward_value.detach() + (surrogate - surrogate.detach())


def quantize(
    x: Tensor,
    *,
    kind: QuantizerKind,
    temperature: float | Tensor = 0.3,
    noise: NoiseKind = "kumaraswamy",
    noise_parameter: float = 2.0,
    ste_derivative: float = V2_STE_DERIVATIVE,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply a quantisation proxy (see the module docstring for each ``kind``).

    Args:
        x: float tensor ``g · y`` of any shape (latent units: one step = one integer).
        kind: which proxy.
        temperature: soft-round temperature t > 0 (``softround*``, ``ste``).
        noise: noise distribution (``softround``, ``noise``); ``noise_v2`` is always uniform.
        noise_parameter: Kumaraswamy ``a`` or Gaussian ``σ``.
        ste_derivative: backward factor of ``ste_v2``.
        generator: optional random generator for the noise.

    Returns:
        Tensor shaped like ``x``: integers for ``ste``, ``ste_v2``, ``hardround``.
    """
    match kind:
        case "softround":
            n = sample_noise(x, noise=noise, noise_parameter=noise_parameter, generator=generator)
            # A tensor temperature: a schedule that changes it does not recompile the kernel.
            return _noisy_softround(
                x, n, torch.as_tensor(temperature, dtype=x.dtype, device=x.device)
            )
        case "softround_alone":
            return softround(x, temperature)
        case "noise":
            n = sample_noise(x, noise=noise, noise_parameter=noise_parameter, generator=generator)
            return x + n
        case "ste":
            return _straight_through(torch.round(x), softround(x, temperature))
        case "ste_v2":
            return _straight_through(torch.round(x), x * ste_derivative)
        case "noise_v2":
            n = sample_noise(x, noise="uniform", noise_parameter=0.0, generator=generator)
            return _straight_through(x + n, x * V2_NOISE_GRADIENT_SCALE)
        case "hardround":
            return torch.round(x).detach()
        case "none":
            return x
        case _:
            assert_never(kind)


@dataclass(frozen=True)
class QuantizerSettings:
    """The quantisation proxy of one training step (see :func:`quantize`).

    A trainer builds a new value when its schedule changes the temperature or noise parameter.
    """

    kind: QuantizerKind = "softround"
    temperature: float = 0.3
    noise: NoiseKind = "kumaraswamy"
    noise_parameter: float = 2.0
    ste_derivative: float = V2_STE_DERIVATIVE

    def __post_init__(self) -> None:
        if self.kind not in _QUANTIZER_KINDS:
            raise ValueError(
                f"quantizer kind: expected one of {_QUANTIZER_KINDS}, found {self.kind!r}"
            )
        if self.noise not in _NOISE_KINDS:
            raise ValueError(
                f"quantizer noise: expected one of {_NOISE_KINDS}, found {self.noise!r}"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(
                f"quantizer temperature: expected a finite number > 0, found {self.temperature}"
            )
        minimum = 1.0 if self.noise == "kumaraswamy" else 0.0
        if not (math.isfinite(self.noise_parameter) and self.noise_parameter >= minimum):
            raise ValueError(
                f"quantizer noise_parameter ({self.noise}): expected a finite number >= {minimum}, "
                f"found {self.noise_parameter}"
            )
        if not (math.isfinite(self.ste_derivative) and self.ste_derivative >= 0):
            raise ValueError(
                f"quantizer ste_derivative: expected a finite number >= 0, "
                f"found {self.ste_derivative}"
            )

    @property
    def is_rounding(self) -> bool:
        """True when the forward value is ``round(x)`` (integer latents)."""
        return self.kind in ("ste", "ste_v2", "hardround")

    def apply(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """:func:`quantize` with these settings."""
        return quantize(
            x,
            kind=self.kind,
            temperature=self.temperature,
            noise=self.noise,
            noise_parameter=self.noise_parameter,
            ste_derivative=self.ste_derivative,
            generator=generator,
        )


#: True rounding, no gradient to the latents: what the decoder sees.
INFERENCE = QuantizerSettings(kind="hardround")
