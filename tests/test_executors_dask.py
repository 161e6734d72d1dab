"""Batches and the daemon on a real Dask cluster: a scheduler and two worker processes.

Skipped as a whole only when the ``[distributed]`` extra is not installed; the README's test
command installs it (``.[dev]`` pulls it in), so CI runs every test here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from coolchic.batch import plan_batch, run_batch  # noqa: E402
from coolchic.daemon.service import WatchConfig, WatchService  # noqa: E402
from coolchic.executors import create_executor  # noqa: E402
from coolchic.executors.dask_cluster import DaskExecutor  # noqa: E402
from coolchic.jobs.inputs import find_inputs, output_paths  # noqa: E402
from coolchic.jobs.settings import EncodeSettings  # noqa: E402
from coolchic.jobs.types import JobFinished, JobId, JobProgress, JobRequest  # noqa: E402
from coolchic.train.progress import ProgressEvent  # noqa: E402
from tests.conftest import planes_bytes, yuv420_planes  # noqa: E402

INSTANT = EncodeSettings(recipe="instant", threads=1, device="cpu", seed=3)


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """A scheduler in this process and two worker processes (with nannies) on 127.0.0.1."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local


def _write_inputs(folder: Path, count: int, *, size: int = 16) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        bit_depth = 10 if k % 2 else 8
        path = folder / f"clip{k}_{size}x{size}_01p_yuv420_{bit_depth}b.yuv"
        path.write_bytes(planes_bytes(yuv420_planes(size, size, bit_depth, seed=k)))
        paths.append(path)
    return paths


class Recorder:
    """A batch listener that keeps every event, and can act on the first progress event."""

    def __init__(self, on_first_progress=None) -> None:
        self.started: list[JobId] = []
        self.progress: list[tuple[JobId, ProgressEvent]] = []
        self.finished: list[tuple[JobId, float, object]] = []
        self.on_first_progress = on_first_progress

    def job_started(self, job_id: JobId, label: str) -> None:
        self.started.append(job_id)

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None:
        if not self.progress and self.on_first_progress is not None:
            self.on_first_progress(job_id)
        self.progress.append((job_id, event))

    def job_finished(self, job_id: JobId, result) -> None:
        self.finished.append((job_id, time.monotonic(), result))


def _batch(folder: Path, output: Path, settings: EncodeSettings, executor, listener=None):
    plan = plan_batch(find_inputs(folder), output, settings, force=True)
    with executor:
        return run_batch(plan, executor, listener=listener)


def test_dask_batch_gives_the_local_streams_and_reports_progress(tmp_path, cluster) -> None:
    inputs = _write_inputs(tmp_path / "in", 3)
    local = _batch(tmp_path / "in", tmp_path / "local", INSTANT, create_executor(None, jobs=2))
    recorder = Recorder()
    remote = _batch(
        tmp_path / "in",
        tmp_path / "dask",
        INSTANT,
        DaskExecutor(distributed.Client(cluster.scheduler_address)),
        recorder,
    )
    assert [r.status for r in local] == [r.status for r in remote] == ["done"] * 3
    for path in inputs:
        stem = path.stem
        assert (tmp_path / "dask" / f"{stem}.cool").read_bytes() == (
            tmp_path / "local" / f"{stem}.cool"
        ).read_bytes()
        report = json.loads((tmp_path / "dask" / f"{stem}.json").read_text())
        assert report["input"] == str(path)
        assert report["output_bytes"] == (tmp_path / "dask" / f"{stem}.cool").stat().st_size
    # progress came back from the workers for every job (the events emitted in the last
    # milliseconds of a job may arrive after its result and are then dropped: best effort)
    kinds = {(job_id, event.kind) for job_id, event in recorder.progress}
    assert {(job_id, "start") for job_id in range(3)} <= kinds
    assert any(event.iteration > 0 for _job_id, event in recorder.progress)


def test_cli_batch_on_a_scheduler_address_matches_the_default_path(tmp_path, cluster) -> None:
    _write_inputs(tmp_path / "in", 2)
    common = [sys.executable, "-m", "coolchic", "-q", "--threads", "1", "batch"]
    settings = ["--recipe", "instant", "--seed", "3", "--json"]
    runs = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", cluster.scheduler_address])):
        done = subprocess.run(
            [*common, str(tmp_path / "in"), "-o", str(tmp_path / name), *settings, *extra],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
        runs[name] = {
            json.loads(line)["input"]: json.loads(line) for line in done.stdout.splitlines()
        }
    assert runs["local"].keys() == runs["dask"].keys()
    for key, record in runs["local"].items():
        assert runs["dask"][key]["bits"] == record["bits"]
        assert runs["dask"][key]["psnr_yuv"] == record["psnr_yuv"]
    assert sorted(p.read_bytes() for p in (tmp_path / "local").glob("*.cool")) == sorted(
        p.read_bytes() for p in (tmp_path / "dask").glob("*.cool")
    )


def test_a_worker_killed_mid_encode_is_replaced_and_nothing_is_lost(tmp_path, cluster) -> None:
    inputs = _write_inputs(tmp_path / "in", 3, size=32)
    client = distributed.Client(cluster.scheduler_address)
    executor = DaskExecutor(client)
    killed: dict[str, object] = {}

    def kill_the_worker_running(job_id: JobId) -> None:
        key = next(key for key, known in executor._job_of_key.items() if known == job_id)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            holders = [a for a, keys in client.processing().items() if key in keys]
            if holders:
                break
            time.sleep(0.02)
        pid = client.run(os.getpid, workers=holders)[holders[0]]
        os.kill(pid, signal.SIGKILL)
        killed.update(job=job_id, pid=pid, at=time.monotonic())

    recorder = Recorder(on_first_progress=kill_the_worker_running)
    results = _batch(tmp_path / "in", tmp_path / "out", INSTANT, executor, recorder)

    assert killed, "no worker was killed"
    assert [r.status for r in results] == ["done"] * 3
    assert Counter(job for job, _at, _result in recorder.finished) == Counter({0: 1, 1: 1, 2: 1})
    finished_at = {job: at for job, at, _result in recorder.finished}
    assert finished_at[killed["job"]] > killed["at"]  # it was still running when killed
    for path in inputs:
        cool, report = output_paths(Path(path.name), tmp_path / "out")
        assert json.loads(report.read_text())["output_bytes"] == cool.stat().st_size
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{p.stem}.cool" for p in inputs] + [f"{p.stem}.json" for p in inputs]
    )
    with distributed.Client(cluster.scheduler_address) as fresh:
        fresh.wait_for_workers(2, timeout=60)  # the nanny replaced the killed worker


def test_a_job_no_worker_can_take_fails_after_the_timeout(tmp_path, cluster) -> None:
    (path,) = _write_inputs(tmp_path / "in", 1)
    cool, report = output_paths(Path(path.name), tmp_path / "out")
    executor = DaskExecutor(
        distributed.Client(cluster.scheduler_address), gpus_per_job=1, resource_timeout_s=0.5
    )
    with executor:
        executor.submit(JobId(7), JobRequest(path, cool, report, INSTANT))
        deadline = time.monotonic() + 30
        messages: list = []
        while not any(isinstance(m, JobFinished) for m in messages):
            assert time.monotonic() < deadline, "the job waited forever"
            messages += executor.wait(0.2)
    (finished,) = [m for m in messages if isinstance(m, JobFinished)]
    assert finished.result.status == "failed"
    assert finished.result.error_kind == "transient"
    assert "GPU=1" in finished.result.error and "--resources GPU=1" in finished.result.error
    assert not cool.exists() and not report.exists()
    assert not any(isinstance(m, JobProgress) for m in messages)


def test_bad_and_up_to_date_inputs_are_settled_by_the_coordinator(tmp_path, cluster) -> None:
    (good,) = _write_inputs(tmp_path / "in", 1)
    truncated = tmp_path / "in" / "cut_16x16_01p_yuv420_8b.yuv"
    truncated.write_bytes(b"\x01" * 50)
    requests = {}
    for job_id, path in enumerate((good, truncated)):
        cool, report = output_paths(Path(path.name), tmp_path / "out")
        requests[JobId(job_id)] = JobRequest(path, cool, report, INSTANT)

    def run_all() -> dict[JobId, object]:
        results = {}
        with DaskExecutor(distributed.Client(cluster.scheduler_address)) as executor:
            for job_id, request in requests.items():
                executor.submit(job_id, request)
            while executor.running:
                for message in executor.wait(0.5):
                    if isinstance(message, JobFinished):
                        results[message.job_id] = message.result
        return results

    first = run_all()
    assert first[0].status == "done"
    assert first[1].status == "failed" and first[1].error_kind == "permanent"
    assert "missing" in first[1].error or "short" in first[1].error
    second = run_all()
    assert second[0].status == "skipped"


def test_the_daemon_sends_its_jobs_to_the_cluster(tmp_path, cluster) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = WatchConfig(
        inbox=inbox,
        output=tmp_path / "out",
        state_dir=tmp_path / "state",
        settings=INSTANT,
        stable_s=0.2,
        rescan_s=0.3,
        tick_s=0.05,
        scheduler=cluster.scheduler_address,
    )
    _write_inputs(tmp_path / "staging", 2)
    for path in (tmp_path / "staging").iterdir():
        path.rename(inbox / path.name)
    stop = threading.Event()
    service = WatchService(config)
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "out").glob("*.json"))) < 2:
            assert time.monotonic() < deadline, "the daemon did not encode both files"
            time.sleep(0.1)
        while len(list((inbox / "done").glob("*.yuv"))) < 2:
            assert time.monotonic() < deadline, "the inputs were not moved to done/"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    reports = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert all(r["bits"] == 8 * r["output_bytes"] for r in reports)


def _run_without_dask(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where importing ``distributed`` fails, as without the extra."""
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from coolchic.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)


def test_without_the_extra_the_default_path_works_and_scheduler_says_what_to_install(
    tmp_path,
) -> None:
    _write_inputs(tmp_path / "in", 1)
    folder = str(tmp_path / "in")
    refused = _run_without_dask(["batch", folder, "--scheduler", "tcp://127.0.0.1:1"])
    assert refused.returncode == 1
    assert 'pip install "coolchic[distributed]"' in refused.stderr
    assert "Traceback" not in refused.stderr
    worked = _run_without_dask(["-q", "--threads", "1", "batch", folder, "--recipe", "instant"])
    assert worked.returncode == 0, worked.stderr
    assert len(list((tmp_path / "in" / "coolchic-out").glob("*.cool"))) == 1


def test_an_unreachable_scheduler_is_one_clear_line(tmp_path) -> None:
    _write_inputs(tmp_path / "in", 1)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coolchic",
            "batch",
            str(tmp_path / "in"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    assert done.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
