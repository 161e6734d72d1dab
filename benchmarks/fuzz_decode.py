"""Decoder fuzzing: mutated streams must end in an ok decode or a coolchic error, never worse.

Valid seed streams (small frames encoded in-process with the ``instant`` recipe: YUV 4:2:0,
4:4:4 10-bit and RGB, the default small decoder, a larger one with 3x3 layers and a
pre-concatenation filter, that one with coarser contexts, with both stabilisers, and with
the inter-feature context and hyper-latents) are mutated ``--streams`` times
(default 10,000), and each mutant is decoded in a worker process with a per-stream time
limit. Mutations:

* ``bitflip``, ``bytes``, ``truncate``, ``insert``: raw damage anywhere (the CRC-32 catches
  most of it, as it should);
* ``header_bits+crc``: bits of the header's bit string flipped, CRC recomputed, so the
  parser meets out-of-range and inconsistent fields;
* ``header_field+crc``: one or two header fields set to other legal values (width, height or
  both up to the limits, architecture, codings, all-zero flags, section split), written by
  the library's own :func:`~coolchic.bitstream.header.write_header`: the stream is valid up
  to the payload, so this is what reaches the allocations, the nn decoder and the range
  decoder;
* ``large+crc``: both sides 1,024 to 16,384, CRC valid, with a random architecture or with
  all-zero latents (so that it decodes for real): the memory bound refuses most, the rest
  decode (or fail) under the address-space cap below;
* ``payload+crc`` and ``section+crc``: the nn or latent section flipped or replaced by random
  bytes, CRC recomputed.

Each outcome is ``ok`` (decoded), ``error`` (a :class:`~coolchic.errors.CoolchicError`, the
only allowed failure), ``crash`` (any other exception, or the worker dying) or ``hang``
(past ``--timeout``; the worker is killed and replaced). The script prints counts per
mutation and outcome, the slowest decodes, and exits 1 on any crash or hang; crashing and
hanging streams are written to ``--crash-dir``.

The workers keep the decoder's default memory limit (``COOLCHIC_DECODE_MEMORY_LIMIT``, 8 GiB)
and get an address-space cap of that limit plus 2 GiB over what the imports map, so that an
allocation the memory bound failed to foresee fails as a crash instead of taking the machine.

``--hostile PATH`` writes the hostile header instead (every size at the largest value the
limits allow, no payload, a correct CRC) and prints the decoder's estimate for it.

Run::

    python benchmarks/fuzz_decode.py                         # 10,000 mutants, 1 worker
    python benchmarks/fuzz_decode.py --streams 500 --seed 3  # a quick look
    python benchmarks/fuzz_decode.py --hostile /tmp/hostile.cool
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import random
import re
import resource
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from coolchic.bitstream import constants as limits  # noqa: E402
from coolchic.bitstream.header import (  # noqa: E402
    GroupCoding,
    StreamHeader,
    SynthesisLayerField,
    read_header,
    unpack_stream,
    write_header,
)
from coolchic.decode_memory import estimate_decode_bytes, format_bytes, largest_header  # noqa: E402

OUTCOMES = ("ok", "error", "crash", "hang")
MUTATIONS = (
    "bitflip",
    "bytes",
    "truncate",
    "insert",
    "header_bits+crc",
    "header_field+crc",
    "large+crc",
    "payload+crc",
    "section+crc",
)
#: Relative frequency of each mutation: the CRC-passing kinds, which reach the decoder, get
#: most of the run (``header_field+crc`` the largest share).
WEIGHTS = (2, 2, 2, 2, 4, 12, 1, 4, 4)


# --------------------------------------------------------------------------------------------
# Streams


def hostile_stream() -> bytes:
    """The hostile header as a complete file (its CRC is correct; both sections are empty)."""
    return write_header(largest_header())


def seed_streams() -> dict[str, bytes]:
    """Small valid streams covering the frame formats, bit depths and both decoder sizes."""
    from coolchic.codec import EncoderConfig, encode
    from coolchic.io import Frame
    from coolchic.model.config import ModelConfig, parse_synthesis

    rng = np.random.default_rng(0)

    def frame(width: int, height: int, fmt: str, bit_depth: int) -> Frame:
        peak = (1 << bit_depth) - 1
        rows = np.linspace(0, 1, height)[:, None]
        cols = np.linspace(0, 1, width)[None, :]
        base = 0.5 + 0.3 * np.sin(6 * rows + 9 * cols * rows)
        chroma = (height // 2, width // 2) if fmt == "yuv420" else (height, width)
        planes = [base] + [np.full(chroma, 0.45 + 0.1 * k) for k in range(2)]
        noisy = [p + rng.normal(0, 0.02, p.shape) for p in planes]
        dtype = np.uint8 if bit_depth == 8 else np.uint16
        ints = tuple(np.clip(np.rint(p * peak), 0, peak).astype(dtype) for p in noisy)
        return Frame.from_integer_planes(ints, fmt=fmt, bit_depth=bit_depth)  # type: ignore[arg-type]

    larger = ModelConfig(
        n_grids=5,
        n_ctx_rowcol=3,
        arm_hidden=(8, 8),
        synthesis=parse_synthesis("12-1-linear-relu,X-3-linear-relu,X-3-residual-none"),
        upsampling_kernel=8,
        preconcat_kernel=5,
    )
    cases = {
        "yuv420-16x16": (frame(16, 16, "yuv420", 8), None),
        "yuv420-64x48": (frame(64, 48, "yuv420", 8), None),
        "yuv444-10b-24x24": (frame(24, 24, "yuv444", 10), None),
        "rgb-32x32-larger": (frame(32, 32, "rgb", 8), larger),
        "yuv420-48x32-coarser": (
            frame(48, 32, "yuv420", 8),
            dataclasses.replace(larger, coarser_contexts=2),
        ),
        "yuv420-32x32-stabiliser": (
            frame(32, 32, "yuv420", 8),
            dataclasses.replace(larger, arm_stabiliser=True, synthesis_stabiliser=True),
        ),
        "yuv420-40x24-ifce-hyper": (
            frame(40, 24, "yuv420", 8),
            dataclasses.replace(larger, ifce_features=2, hyper_grids=2),
        ),
    }
    return {
        name: encode(image, EncoderConfig(recipe="instant", model=model)).bitstream
        for name, (image, model) in cases.items()
    }


# --------------------------------------------------------------------------------------------
# Mutations


def _restamp(body: bytearray, header_length: int) -> bytes:
    """Recompute the CRC-32 (over header and sections) where a header of that length keeps it."""
    crc = zlib.crc32(bytes(body[header_length:]), zlib.crc32(bytes(body[: header_length - 4])))
    body[header_length - 4 : header_length] = crc.to_bytes(4, "big")
    return bytes(body)


def _random_layers(rng: random.Random, n_grids: int) -> tuple[SynthesisLayerField, ...]:
    count = rng.choice([1, 2, 3, rng.randint(1, limits.MAX_SYNTHESIS_LAYERS)])
    layers = []
    channels = n_grids
    for index in range(count):
        last = index == count - 1
        out = limits.OUT_CHANNELS if last else rng.choice([channels, rng.randint(1, 16), 3])
        out = (
            rng.randint(1, limits.MAX_SYNTHESIS_CHANNELS)
            if not last and rng.random() < 0.05
            else out
        )
        kind = "residual" if out == channels and rng.random() < 0.5 else "linear"
        kernel = rng.choice([1, 1, 3, 5, rng.randrange(1, limits.MAX_SYNTHESIS_KERNEL + 1, 2)])
        layers.append(SynthesisLayerField(out, kernel, kind, rng.choice(["relu", "none"])))
        channels = out
    return tuple(layers)


def _field_value(rng: random.Random, header: StreamHeader, name: str) -> Any:
    """A legal (or nearly legal: the header re-validates it) new value of field ``name``."""
    size_limit = {"width": limits.MAX_WIDTH, "height": limits.MAX_HEIGHT}
    match name:
        case "width" | "height":
            current = getattr(header, name)
            return rng.choice(
                [
                    current + rng.choice([-2, -1, 1, 2]),
                    rng.randint(1, 64),
                    rng.randint(1, 4096),
                    size_limit[name],
                    2 * current,
                ]
            )
        case "frame_format":
            return rng.choice(["rgb", "yuv420", "yuv444"])
        case "bit_depth":
            return rng.randint(limits.MIN_BIT_DEPTH, limits.MAX_BIT_DEPTH)
        case "n_grids":
            return rng.randint(1, limits.MAX_N_GRIDS)
        case "n_ctx_rowcol":
            return rng.randint(1, limits.MAX_N_CTX_ROWCOL)
        case "coarser_contexts":
            return rng.randint(0, limits.MAX_COARSER_CONTEXTS)
        case "ifce_features":
            return rng.randint(0, limits.MAX_IFCE_FEATURES)
        case "hyper_grids":
            return rng.randint(0, limits.MAX_HYPER_GRIDS)
        case "zero_hyper_grids":
            return tuple(rng.random() < 0.5 for _ in range(header.hyper_grids))
        case "arm_stabiliser" | "synthesis_stabiliser":
            return not getattr(header, name)
        case "arm_hidden":
            count = rng.randint(0, limits.MAX_ARM_HIDDEN_LAYERS)
            return tuple(
                rng.choice([8, rng.randint(1, limits.MAX_ARM_WIDTH)]) for _ in range(count)
            )
        case "upsampling_kernel":
            return rng.randrange(limits.MIN_UPSAMPLING_KERNEL, limits.MAX_UPSAMPLING_KERNEL + 1, 2)
        case "preconcat_kernel":
            return rng.choice([0, rng.randrange(1, limits.MAX_PRECONCAT_KERNEL + 1, 2)])
        case "synthesis":
            return _random_layers(rng, header.n_grids)
        case "nn_coding":
            coding = list(header.nn_coding)
            index = rng.randrange(len(coding))
            coding[index] = GroupCoding(
                exp=rng.randint(
                    0, limits.MAX_STEP_EXPONENT if index else limits.ARM_MAX_WEIGHT_EXP
                ),
                order=rng.randint(0, limits.MAX_EG_ORDER),
                rice=header.format_version >= 7 and rng.random() < 0.5,
            )
            return tuple(coding)
        case "zero_grids":
            return tuple(rng.random() < 0.5 for _ in range(header.n_grids))
        case "size":  # both sides at once, log-uniform up to the limits
            return tuple(
                round(2 ** rng.uniform(0, limit.bit_length() - 1))
                for limit in (limits.MAX_WIDTH, limits.MAX_HEIGHT)
            )
        case "split":  # move bytes between the two sections (latent section stays whole words)
            return 4 * rng.randint(-2, 2)
        case _:
            raise ValueError(name)


_FIELDS = (
    "width",
    "height",
    "frame_format",
    "bit_depth",
    "n_grids",
    "n_ctx_rowcol",
    "coarser_contexts",
    "ifce_features",
    "hyper_grids",
    "zero_hyper_grids",
    "arm_stabiliser",
    "synthesis_stabiliser",
    "arm_hidden",
    "upsampling_kernel",
    "preconcat_kernel",
    "synthesis",
    "nn_coding",
    "zero_grids",
    "size",
    "split",
)


def _header_field(rng: random.Random, stream: bytes) -> bytes:
    """One or two header fields changed to legal values, written back with a valid CRC."""
    header, nn, latents = unpack_stream(stream)
    payload = nn + latents
    for _ in range(50):  # redraw until the header accepts the combination
        changes: dict[str, Any] = {}
        new = header
        try:
            for name in rng.sample(_FIELDS, rng.choice([1, 1, 2])):
                value = _field_value(rng, new, name)
                if name == "size":
                    changes = {"width": value[0], "height": value[1]}
                elif name == "split":
                    changes = {"nn_bytes": new.nn_bytes + value}
                    changes["latent_bytes"] = len(payload) - changes["nn_bytes"]
                elif name == "n_grids":
                    changes = {"n_grids": value, "zero_grids": ()}
                    changes["synthesis"] = _random_layers(rng, value)
                elif name == "hyper_grids":
                    changes = {"hyper_grids": value, "zero_hyper_grids": ()}
                else:
                    changes = {name: value}
                new = dataclasses.replace(new, **changes)
            return write_header(new, payload) + payload
        except ValueError:
            continue
    return stream


def _large(rng: random.Random, stream: bytes) -> bytes:
    """Both sides 1,024 to 16,384: the memory bound's territory, with a CRC that matches.

    Half of them get a new architecture (the nn section no longer fits it); the other half
    keep theirs, drop the latent section and flag every grid all-zero, so that an accepted one
    decodes for real: upsampling, synthesis and output planes at the full size.
    """
    header, nn, latents = unpack_stream(stream)
    for _ in range(50):
        width, height = (round(2 ** rng.uniform(10, 14)) & ~1 for _ in range(2))
        if rng.random() < 0.5:
            n_grids = rng.randint(1, limits.MAX_N_GRIDS)
            changes = {
                "n_grids": n_grids,
                "zero_grids": (),
                "synthesis": _random_layers(rng, n_grids),
                "preconcat_kernel": _field_value(rng, header, "preconcat_kernel"),
            }
            payload = nn + latents
        else:
            changes = {"zero_grids": (True,) * header.n_grids, "latent_bytes": 0}
            payload = nn
        try:
            new = dataclasses.replace(header, width=width, height=height, **changes)
            return write_header(new, payload) + payload
        except ValueError:
            continue
    return stream


def mutate(rng: random.Random, stream: bytes, kind: str) -> bytes:
    """One mutant of ``stream``."""
    body = bytearray(stream)
    _, header_length = read_header(stream)
    match kind:
        case "bitflip":
            for _ in range(rng.randint(1, 8)):
                body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        case "bytes":
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        case "truncate":
            del body[rng.randrange(len(body)) :]
        case "insert":
            at = rng.randrange(len(body) + 1)
            body[at:at] = rng.randbytes(rng.randint(1, 16))
        case "header_bits+crc":
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(3, header_length - 4)] ^= 1 << rng.randrange(8)
            return _restamp(body, header_length)
        case "header_field+crc":
            return _header_field(rng, stream)
        case "large+crc":
            return _large(rng, stream)
        case "payload+crc":
            if len(body) > header_length:
                for _ in range(rng.randint(1, 8)):
                    body[rng.randrange(header_length, len(body))] ^= 1 << rng.randrange(8)
            return _restamp(body, header_length)
        case "section+crc":
            header, nn, latents = unpack_stream(stream)
            if rng.random() < 0.5:
                nn = rng.randbytes(rng.randint(0, len(nn) + 8))
            else:
                latents = rng.randbytes(4 * rng.randint(0, len(latents) // 4 + 4))
            new = dataclasses.replace(header, nn_bytes=len(nn), latent_bytes=len(latents))
            try:
                return write_header(new, nn + latents) + nn + latents
            except ValueError:  # a latent section longer than the grids allow
                return stream
        case _:
            raise ValueError(kind)
    return bytes(body)


# --------------------------------------------------------------------------------------------
# Workers


def _address_space_cap(extra: int) -> int:
    """What this process maps now (VmSize) plus ``extra`` bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024 + extra
    return resource.RLIM_INFINITY


def _resident_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident memory of this process (Linux; ``(0, 0)`` elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0, 0
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(conn: Connection, cap_extra: int, warmup: bytes) -> None:
    """Decode every stream received; answer ``(outcome, exception type, message, seconds,
    growth)``, growth being how far a decode that set a new resident peak rose above the
    resident memory it started from (0 when the peak did not move: the figure is unknown)."""
    from coolchic.decoder import decode_stream
    from coolchic.errors import CoolchicError

    decode_stream(warmup)  # imports and first-call costs out of the timing
    if cap_extra and sys.platform.startswith("linux"):
        cap = _address_space_cap(cap_extra)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready", "", "", 0.0, 0))
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        started = time.perf_counter()
        before, peak_before = _resident_bytes()
        try:
            decode_stream(data)
            answer = ("ok", "", "")
        except CoolchicError as error:
            answer = ("error", type(error).__name__, str(error)[:200])
        except Exception as error:  # what the fuzzing is looking for
            answer = ("crash", type(error).__name__, str(error)[:500])
        peak = _resident_bytes()[1]
        growth = peak - before if peak > peak_before else 0
        conn.send((*answer, time.perf_counter() - started, growth))


class _Worker:
    """One decoding process; replaced when it hangs or dies."""

    def __init__(self, cap_extra: int, warmup: bytes) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, cap_extra, warmup), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv()[0] != "ready":
            raise RuntimeError("decoder worker did not start")

    def decode(self, data: bytes, timeout: float) -> tuple[str, str, str, float, int]:
        """``(outcome, exception type, message, seconds, resident growth)`` of one stream."""
        started = time.perf_counter()
        try:
            self.conn.send_bytes(data)
            if not self.conn.poll(timeout):
                elapsed = time.perf_counter() - started
                return "hang", "", f"no answer within {timeout:g} s", elapsed, 0
            outcome, kind, message, seconds, growth = self.conn.recv()
            return outcome, kind, message, seconds, growth
        except (EOFError, OSError, BrokenPipeError):
            self.process.join(5)
            code = self.process.exitcode
            elapsed = time.perf_counter() - started
            return "crash", "WorkerDied", f"exit code {code}", elapsed, 0

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


# --------------------------------------------------------------------------------------------
# Run


def _reason(message: str) -> str:
    """An error message with its numbers blanked, cut short: what kind of refusal it was."""
    return re.sub(r"0x[0-9a-f]+|[0-9]+", "N", message)[:80]


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The fuzz run; returns the counts (also printed)."""
    started = time.perf_counter()
    seeds = seed_streams()
    log(
        f"seeds: {', '.join(f'{name} ({len(data)} B)' for name, data in seeds.items())} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    rng = random.Random(args.seed)
    names = list(seeds)
    chosen = [(k, w) for k, w in zip(MUTATIONS, WEIGHTS, strict=True) if k in args.mutations]
    kinds, weights = [k for k, _ in chosen], [w for _, w in chosen]
    counts: Counter[tuple[str, str]] = Counter()
    error_types: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    slowest: list[tuple[float, str, str]] = []
    peaks: list[tuple[float, int, int]] = []
    failures: list[str] = []
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    worker = _Worker(args.cap_extra, seeds[names[0]])
    fuzz_started = time.perf_counter()
    try:
        for index in range(args.streams):
            name = rng.choice(names)
            kind = rng.choices(kinds, weights)[0]
            data = mutate(rng, seeds[name], kind)
            outcome, exc_type, message, seconds, growth = worker.decode(data, args.timeout)
            counts[(kind, outcome)] += 1
            if growth >= 64 << 20:  # a new resident peak worth comparing with the estimate
                estimate = estimate_decode_bytes(read_header(data)[0])
                peaks = sorted([*peaks, (growth / estimate, growth, estimate)], reverse=True)
            if outcome == "error":
                error_types[exc_type] += 1
                reasons[_reason(message)] += 1
            slowest = sorted([*slowest, (seconds, kind, name)], reverse=True)[:5]
            if outcome in ("crash", "hang"):
                path = args.crash_dir / f"{outcome}-{index:05d}-{kind}.cool"
                path.write_bytes(data)
                failures.append(f"{path}: {exc_type}: {message}")
                log(f"  {outcome}: {path.name} ({name}, {exc_type}: {message})")
                worker.close()
                worker = _Worker(args.cap_extra, seeds[names[0]])
            if (index + 1) % args.progress == 0:
                log(f"  {index + 1} streams, {time.perf_counter() - fuzz_started:.0f} s")
    finally:
        worker.close()
    elapsed = time.perf_counter() - fuzz_started
    totals = Counter({outcome: 0 for outcome in OUTCOMES})
    for (_, outcome), n in counts.items():
        totals[outcome] += n
    log(
        f"\n{args.streams} mutated streams in {elapsed:.0f} s "
        f"({elapsed / args.streams * 1e3:.0f} ms each)"
    )
    log(f"{'mutation':<18}" + "".join(f"{o:>8}" for o in OUTCOMES))
    for kind in MUTATIONS:
        log(f"{kind:<18}" + "".join(f"{counts[(kind, o)]:>8}" for o in OUTCOMES))
    log(f"{'total':<18}" + "".join(f"{totals[o]:>8}" for o in OUTCOMES))
    log("coolchic errors: " + ", ".join(f"{t} {n}" for t, n in error_types.most_common()))
    memory = sum(n for reason, n in reasons.items() if "needs about" in reason)
    log(f"refused by the memory bound: {memory}")
    log("most frequent refusals:")
    for reason, n in reasons.most_common(args.reasons):
        log(f"  {n:>6}  {reason}")
    if peaks:
        ratio, growth, estimate = peaks[0]
        log(
            f"new resident peaks: {len(peaks)}; the highest growth / estimate was "
            f"{ratio:.2f} ({format_bytes(growth)} of {format_bytes(estimate)})"
        )
    log("slowest decodes: " + ", ".join(f"{s:.2f} s ({k}, {n})" for s, k, n in slowest))
    for failure in failures:
        log(f"FAILED {failure}")
    return {
        "streams": args.streams,
        "seconds": elapsed,
        "totals": dict(totals),
        "by_mutation": {f"{k}/{o}": n for (k, o), n in sorted(counts.items())},
        "error_types": dict(error_types),
        "reasons": dict(reasons),
        "memory_bound_refusals": memory,
        "resident_peaks": [(growth, estimate) for _, growth, estimate in peaks],
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000, help="mutants (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a decode may take (default 60)"
    )
    parser.add_argument(
        "--cap-extra",
        type=float,
        default=None,
        help="GiB of address space the worker may map beyond its imports (default: the "
        "decoder's memory limit + 2; 0: no cap)",
    )
    parser.add_argument("--progress", type=int, default=1000, help="report every N streams")
    parser.add_argument("--reasons", type=int, default=12, help="refusal kinds listed")
    parser.add_argument(
        "--mutations",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(MUTATIONS),
        help=f"comma-separated subset of {','.join(MUTATIONS)} (default: all)",
    )
    parser.add_argument(
        "--crash-dir",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results" / "fuzz",
        help="where crashing and hanging streams are written",
    )
    parser.add_argument(
        "--hostile", type=Path, help="write the hostile stream to this file and exit"
    )
    args = parser.parse_args()
    if args.hostile:
        from coolchic.decode_memory import decode_memory_limit

        data = hostile_stream()
        args.hostile.write_bytes(data)
        estimate = estimate_decode_bytes(largest_header())
        print(
            f"{args.hostile}: {len(data)} bytes, {limits.MAX_WIDTH}x{limits.MAX_HEIGHT}, "
            f"decoding would need about {format_bytes(estimate)} "
            f"(limit {format_bytes(decode_memory_limit())})"
        )
        return 0
    if args.cap_extra is None:
        from coolchic.decode_memory import decode_memory_limit

        args.cap_extra = decode_memory_limit() / (1 << 30) + 2
    args.cap_extra = int(args.cap_extra * (1 << 30))
    result = run(args)
    return 1 if result["totals"]["crash"] or result["totals"]["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
