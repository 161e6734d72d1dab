"""coolchic.jobs and coolchic.batch: settings fingerprint, error classes, input discovery,
outputs, workers."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path, PurePath

import pytest

from coolchic.batch import plan_batch
from coolchic.errors import BitstreamError, DeviceError, EncodingError, InputError
from coolchic.executors.local import LocalExecutor
from coolchic.io.files import output_folder_lock
from coolchic.jobs.inputs import (
    InputFile,
    find_inputs,
    is_input_name,
    output_paths,
    remove_stale_temporaries,
)
from coolchic.jobs.run import run_job, up_to_date_report, write_outputs
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import JobFinished, JobId, JobProgress, JobRequest, classify_error
from tests.conftest import MakeYuv

INSTANT = EncodeSettings(recipe="instant", threads=1, device="cpu")


def test_fingerprint_follows_output_changing_settings_only() -> None:
    base = EncodeSettings(recipe="instant")
    assert base.fingerprint() == EncodeSettings(recipe="instant", threads=3).fingerprint()
    assert base.fingerprint() == EncodeSettings(recipe="instant", device="cpu").fingerprint()
    for changed in (
        EncodeSettings(recipe="faster"),
        EncodeSettings(recipe="instant", lmbda=2e-3),
        EncodeSettings(recipe="instant", seed=1),
        EncodeSettings(recipe="instant", layers_arm="8,8"),
        EncodeSettings(recipe="instant", latent_n_grids=3),
        EncodeSettings(recipe="instant", iterations_scale=1.5),
    ):
        assert changed.fingerprint() != base.fingerprint(), changed


def test_architecture_options_turn_off_the_default_context_they_exclude() -> None:
    """Options given over a default with IFCE and hyper-latents never make an invalid mix."""
    from coolchic.codec import default_model_config

    base = default_model_config(1e-3, "medium", pixels=64 * 64)
    assert (base.ifce_features, base.hyper_grids) == (2, 3)

    def model(**options: object) -> tuple[int, int, int]:
        config = EncodeSettings(recipe="medium", **options).model_config(base)  # type: ignore[arg-type]
        assert config is not None
        return config.coarser_contexts, config.ifce_features, config.hyper_grids

    assert model(coarser_contexts=1) == (1, 0, 0)
    assert model(ifce_features=0) == (0, 0, 0)
    assert model(ifce_features=4) == (0, 4, 3)
    assert model(latent_n_grids=3) == (0, 2, 2)
    assert model(ifce_features=2, hyper_grids=1) == (0, 2, 1)
    assert model(coarser_contexts=0) == (0, 2, 3)
    with pytest.raises(ValueError, match="coarser"):
        model(coarser_contexts=1, ifce_features=2)


def test_fingerprint_follows_the_bitstream_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch must re-encode outputs of an older format: this decoder cannot read them."""
    before = INSTANT.fingerprint()
    monkeypatch.setattr("coolchic.jobs.settings.FORMAT_VERSION", 1)
    assert INSTANT.fingerprint() != before


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InputError("bad name"), "permanent"),
        (BitstreamError("mismatch"), "permanent"),
        (EncodingError("diverged"), "permanent"),
        (OSError(errno.EIO, "Input/output error"), "transient"),
        (PermissionError(errno.EACCES, "denied"), "transient"),
        (MemoryError(), "transient"),
        (RuntimeError("CUDA out of memory. Tried to allocate"), "transient"),
        (DeviceError("no CUDA"), "transient"),
        (ZeroDivisionError("bug"), "permanent"),
    ],
)
def test_error_classification(error: BaseException, kind: str) -> None:
    assert classify_error(error) == kind


@pytest.mark.parametrize(
    ("name", "png", "expected"),
    [
        ("a_16x8_01p_yuv420_8b.yuv", False, True),
        ("A_16X8_01P_YUV420_8B.YUV", False, True),
        ("badly named.yuv", False, True),  # taken, then failed with its reason
        ("image.png", False, False),
        ("image.png", True, True),
        (".hidden_16x8_01p_yuv420_8b.yuv", False, False),
        ("a_16x8_01p_yuv420_8b.yuv.part", False, False),
        ("a_16x8_01p_yuv420_8b.yuv.tmp", False, False),
        ("~lock.yuv", False, False),
        ("notes.txt", True, False),
    ],
)
def test_input_names(name: str, png: bool, expected: bool) -> None:
    assert is_input_name(name, include_png=png) is expected


def test_find_inputs_applies_the_safety_rules(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "out").mkdir()
    for relative in (
        "a.yuv",
        "b.png",
        ".c.yuv",
        "d.yuv.part",
        "sub/e.yuv",
        "sub/deeper/f.yuv",
        ".hidden/g.yuv",
        "out/h.yuv",
    ):
        (root / relative).write_bytes(b"x")
    outside = tmp_path / "secret.yuv"
    outside.write_bytes(b"x")
    (root / "link_out.yuv").symlink_to(outside)
    (root / "link_in.yuv").symlink_to(root / "a.yuv")
    (root / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "fifo.yuv")

    (root / "folder.yuv").mkdir()

    flat = {str(i.relative): i.refused for i in find_inputs(root)}
    assert set(flat) == {"a.yuv", "link_in.yuv", "link_out.yuv", "fifo.yuv", "folder.yuv"}
    assert flat["a.yuv"] is None and flat["link_in.yuv"] is None
    assert "outside" in (flat["link_out.yuv"] or "")
    assert flat["fifo.yuv"] == "not a regular file"  # listed, never opened
    assert flat["folder.yuv"] == "a folder, not a file"

    deep = find_inputs(root, recursive=True, include_png=True, exclude=[root / "out"])
    assert [str(i.relative) for i in deep] == [
        "a.yuv",
        "b.png",
        "fifo.yuv",
        "link_in.yuv",
        "link_out.yuv",
        "sub/deeper/f.yuv",
        "sub/e.yuv",
    ]


def test_output_paths_mirror_folders_and_never_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cool, report = output_paths(PurePath("sub/clip_16x8_01p_yuv420_8b.yuv"), out)
    assert cool == out / "sub" / "clip_16x8_01p_yuv420_8b.cool"
    assert report == out / "sub" / "clip_16x8_01p_yuv420_8b.json"
    for bad in ("../x.yuv", "/etc/x.yuv", "sub/../../x.yuv"):
        with pytest.raises(InputError):
            output_paths(PurePath(bad), out)
    (out).mkdir()
    (out / "evil").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        output_paths(PurePath("evil/x.yuv"), out)


def test_run_job_writes_outputs_and_recognises_them(make_yuv: MakeYuv, tmp_path: Path) -> None:
    source = make_yuv("clip_16x8_01p_yuv420_8b.yuv")
    cool, report_path = output_paths(PurePath(source.name), tmp_path / "out")
    request = JobRequest(source, cool, report_path, INSTANT)
    events = []
    result = run_job(request, progress=events.append)
    assert result.status == "done", result.error
    assert events[-1].kind == "done"
    report = json.loads(report_path.read_text())
    assert report["output_bytes"] == cool.stat().st_size
    assert report["settings_fingerprint"] == INSTANT.fingerprint()
    assert report["input_bytes"] == source.stat().st_size
    assert report["threads"] == 1

    assert run_job(request).status == "skipped"
    assert up_to_date_report(source, cool, report_path, INSTANT) is not None
    assert up_to_date_report(source, cool, report_path, EncodeSettings(recipe="faster")) is None
    data = bytearray(source.read_bytes())
    data[0] ^= 0xFF  # same size, other content: only the sha256 tells
    source.write_bytes(bytes(data))
    assert up_to_date_report(source, cool, report_path, INSTANT) is None
    source.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 1]))
    cool.write_bytes(cool.read_bytes()[:-1])
    assert up_to_date_report(source, cool, report_path, INSTANT) is None


def test_run_job_classifies_bad_inputs_and_writes_nothing(
    make_yuv: MakeYuv, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    short = make_yuv("short_16x8_01p_yuv420_8b.yuv")
    short.write_bytes(b"\0" * 10)
    for source, fragment in ((make_yuv("noname.yuv"), "convention"), (short, "truncated")):
        cool, report = output_paths(PurePath(source.name), out)
        result = run_job(JobRequest(source, cool, report, INSTANT))
        assert result.status == "failed"
        assert result.error_kind == "permanent"
        assert fragment in (result.error or "")
        assert not cool.exists() and not report.exists()
    blocked = make_yuv("blocked_16x8_01p_yuv420_8b.yuv")
    cool, report = output_paths(PurePath(blocked.name), out)
    cool.mkdir(parents=True)  # a folder where the stream goes: an OSError when writing
    result = run_job(JobRequest(blocked, cool, report, INSTANT))
    assert (result.status, result.error_kind) == ("failed", "transient")
    assert not report.exists()


def test_plan_batch_refuses_clashes_and_bad_files_up_front(
    make_yuv: MakeYuv, tmp_path: Path
) -> None:
    a = make_yuv("a_16x8_01p_yuv420_8b.yuv")
    other = tmp_path / "other"
    other.mkdir()
    b = other / a.name
    b.write_bytes(a.read_bytes())
    short = make_yuv("s_16x8_01p_yuv420_8b.yuv")
    short.write_bytes(b"\0" * 7)
    items = [
        InputFile(a, tmp_path, PurePath(a.name)),
        InputFile(b, other, PurePath(b.name)),
        InputFile(short, tmp_path, PurePath(short.name)),
        InputFile(tmp_path / "x.yuv", tmp_path, PurePath("x.yuv"), refused="symbolic link"),
    ]
    plan = plan_batch(items, tmp_path / "out", INSTANT, force=False)
    assert [p.result is None for p in plan.items] == [True, False, False, False]
    errors = [p.result.error for p in plan.items[1:] if p.result is not None]
    assert "already the output of" in errors[0]
    assert "truncated" in errors[1]
    assert errors[2].startswith("refused")


def test_worker_pool_reports_progress_results_and_lost_workers(
    make_yuv: MakeYuv, tmp_path: Path
) -> None:
    first = make_yuv("one_16x8_01p_yuv420_8b.yuv")
    second = make_yuv("two_64x64_01p_yuv420_8b.yuv", width=64, height=64)
    out = tmp_path / "out"

    def request(path: Path) -> JobRequest:
        cool, report = output_paths(PurePath(path.name), out)
        return JobRequest(path, cool, report, INSTANT)

    with LocalExecutor(1) as pool:
        pool.submit(JobId(1), request(first))
        assert pool.free == 0
        with pytest.raises(RuntimeError):
            pool.submit(JobId(2), request(second))
        messages = _wait_for(pool, lambda m: isinstance(m, JobFinished))
        assert any(isinstance(m, JobProgress) for m in messages)
        assert messages[-1].result.status == "done"
        pid = pool.pid_of(JobId(1))
        assert pid is None  # finished: the worker is idle again

        pool.submit(JobId(2), request(second))
        worker_pid = pool.pid_of(JobId(2))
        assert worker_pid is not None
        _wait_for(pool, lambda m: isinstance(m, JobProgress))
        os.kill(worker_pid, 9)
        lost = _wait_for(pool, lambda m: isinstance(m, JobFinished))[-1]
        assert lost.result.status == "failed"
        assert lost.result.error_kind == "transient"
        assert "signal 9" in (lost.result.error or "")
        assert pool.free == 1
        assert not list(out.glob(".*.tmp"))


def _wait_for(pool: LocalExecutor, condition, timeout_s: float = 60.0) -> list:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in pool.wait(0.2):
            seen.append(message)
            if condition(message):
                return seen
    raise AssertionError(f"no matching message in {timeout_s} s: {seen}")


def test_remove_stale_temporaries_touches_only_ours(tmp_path: Path) -> None:
    ours = [tmp_path / ".clip.cool.ab12cd.tmp", tmp_path / "sub" / ".clip.json.x9.tmp"]
    theirs = [tmp_path / ".notes.txt.ab.tmp", tmp_path / "clip.cool", tmp_path / "a.tmp"]
    for path in ours + theirs:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs)


def _write_pairs(folder: str, writer: int, rounds: int) -> None:
    """One of two processes that write the same output names, as two batch runs would."""
    cool = Path(folder) / "clip.cool"
    for index in range(rounds):
        payload = f"{writer}:{index}".encode() * 50
        write_outputs(cool, payload, cool.with_suffix(".json"), {"stream": payload.decode()})


def test_two_writers_of_one_output_folder_never_interleave_their_pairs(tmp_path: Path) -> None:
    """Whenever the folder's lock is free, the report on disk describes the stream on disk."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_pairs, args=(str(tmp_path), writer, 300)) for writer in (1, 2)
    ]
    for process in writers:
        process.start()
    checks = 0
    while any(process.is_alive() for process in writers) or checks == 0:
        with output_folder_lock(tmp_path):
            cool, report = tmp_path / "clip.cool", tmp_path / "clip.json"
            if cool.exists() and report.exists():
                assert json.loads(report.read_text())["stream"].encode() == cool.read_bytes()
                checks += 1
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    assert checks > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.cool", "clip.json"]
