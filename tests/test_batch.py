"""``coolchic batch``: good, badly named, truncated and already encoded files in one folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from coolchic.cli import main
from tests.conftest import planes_bytes, yuv420_planes


def _write_yuv(path: Path, *, bit_depth: int = 8, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(planes_bytes(yuv420_planes(16, 8, bit_depth, seed=seed)))
    return path


def _lines(text: str) -> dict[str, dict]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {Path(record["input"]).name: record for record in records}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


BATCH = ["--threads", "1", "batch", "--recipe", "instant"]


def test_batch_encodes_reports_skips_and_forces(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    out = folder / "coolchic-out"
    good8 = _write_yuv(folder / "good_16x8_01p_yuv420_8b.yuv", seed=1)
    good10 = _write_yuv(folder / "good_16x8_01p_yuv420_10b.yuv", bit_depth=10, seed=2)
    encoded = _write_yuv(folder / "encoded_16x8_01p_yuv420_8b.yuv", seed=3)
    badly_named = _write_yuv(folder / "holiday photo.yuv", seed=4)
    truncated = folder / "cut_16x8_01p_yuv420_8b.yuv"
    truncated.write_bytes(b"\x10" * 100)
    (folder / "readme.txt").write_text("not an input")

    assert main([*BATCH, str(encoded), "--output", str(out)]) == 0  # the earlier run
    capsys.readouterr()

    assert main([*BATCH, str(folder), "--json"]) == 3
    first = _lines(capsys.readouterr().out)
    assert set(first) == {good8.name, good10.name, encoded.name, badly_named.name, truncated.name}
    assert first[good8.name]["status"] == "done" and first[good8.name]["bit_depth"] == 8
    assert first[good10.name]["status"] == "done" and first[good10.name]["bit_depth"] == 10
    assert first[encoded.name]["status"] == "skipped"
    assert first[badly_named.name]["status"] == "failed"
    assert "does not follow the convention" in first[badly_named.name]["error"]
    assert first[truncated.name]["status"] == "failed"
    assert "truncated" in first[truncated.name]["error"]
    assert first[truncated.name]["error_kind"] == "permanent"
    for record in first.values():
        if record["status"] != "failed":
            assert record["bpp"] > 0 and record["psnr_yuv"] > 0
    stems = [p.name.removesuffix(".yuv") for p in (good8, good10, encoded)]
    expected = [f"{stem}.{ext}" for stem in stems for ext in ("cool", "json")]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)

    before = _mtimes(out)
    assert main([*BATCH, str(folder)]) == 3  # again: nothing new
    table = capsys.readouterr().out
    assert "0 encoded, 3 up to date, 2 failed" in table
    assert _mtimes(out) == before

    assert main([*BATCH, str(folder), "--force", "--json"]) == 3
    forced = _lines(capsys.readouterr().out)
    assert [forced[n.name]["status"] for n in (good8, good10, encoded)] == ["done"] * 3
    after = _mtimes(out)
    assert all(after[name] != before[name] for name in before)


def test_batch_recursive_png_jobs_and_explicit_files(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    _write_yuv(folder / "top_16x8_01p_yuv420_8b.yuv", seed=5)
    _write_yuv(folder / "sub" / "deep_16x8_01p_yuv420_8b.yuv", seed=6)
    _write_yuv(folder / ".hidden" / "no_16x8_01p_yuv420_8b.yuv", seed=7)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "sub" / "picture.png")
    out = tmp_path / "out"
    args = [*BATCH, str(folder), "-o", str(out), "--recursive", "--include-png", "--jobs", "2"]
    assert main([*args, "--json"]) == 0
    records = _lines(capsys.readouterr().out)
    assert {name: r["status"] for name, r in records.items()} == {
        "top_16x8_01p_yuv420_8b.yuv": "done",
        "deep_16x8_01p_yuv420_8b.yuv": "done",
        "picture.png": "done",
    }
    assert records["picture.png"]["format"] == "rgb"
    assert (out / "sub" / "deep_16x8_01p_yuv420_8b.cool").exists()
    assert (out / "sub" / "picture.json").exists()
    assert not (out / "coolchic-out").exists()

    # explicit files need --output when they are not one folder; a PNG given is always taken
    assert main([*BATCH, str(folder / "sub" / "picture.png"), str(folder)]) == 2
    capsys.readouterr()
    assert main([*BATCH, str(folder / "sub" / "picture.png"), "-o", str(out / "sub")]) == 0
    assert "0 encoded, 1 up to date, 0 failed" in capsys.readouterr().out


def test_batch_with_no_input_says_so(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main([*BATCH, str(tmp_path)]) == 0
    assert "no .yuv input found" in capsys.readouterr().err


def test_batch_several_lmbdas_one_output_per_point_and_rerun_does_nothing(
    tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "in"
    out = tmp_path / "out"
    names = [
        _write_yuv(folder / f"pic{i}_16x8_01p_yuv420_8b.yuv", seed=10 + i).name for i in range(2)
    ]
    command = [*BATCH, str(folder), "--output", str(out), "--lmbda", "4e-3, 1e-3", "--json"]
    assert main(command) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((Path(r["input"]).name, r["point"], r["status"]) for r in records) == sorted(
        (name, point, "done") for name in names for point in ("l4e-3", "l1e-3")
    )
    stems = [name.removesuffix(".yuv") for name in names]
    expected = {
        f"{stem}.l{point}.{ext}"
        for stem in stems
        for point in ("4e-3", "1e-3")
        for ext in ("cool", "json")
    }
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == expected
    for stem in stems:  # each point was encoded at its own λ, and the larger λ gave fewer bits
        low = json.loads((out / f"{stem}.l4e-3.json").read_text())
        high = json.loads((out / f"{stem}.l1e-3.json").read_text())
        assert (low["lmbda"], high["lmbda"]) == (4e-3, 1e-3)
        assert low["bpp"] < high["bpp"]
    before = _mtimes(out)

    assert main(command) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(again) == 4 and {r["status"] for r in again} == {"skipped"}
    assert _mtimes(out) == before

    assert main([*BATCH, str(folder), "--output", str(out), "--lmbda", "4e-3"]) == 0
    capsys.readouterr()
    assert {p.name for p in out.iterdir() if p.suffix == ".cool"} >= {f"{stems[0]}.cool"}


def test_batch_refuses_a_bad_or_repeated_lmbda_list(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    _write_yuv(folder / "pic_16x8_01p_yuv420_8b.yuv")
    for bad, message in (
        ("1e-3,abc", "expected numbers"),
        ("1e-3,0.001", "given twice"),
        ("1e-3,-2", "lmbda must be"),
    ):
        assert main([*BATCH, str(folder), "--lmbda", bad]) == 2
        assert message in capsys.readouterr().err
    assert not (folder / "coolchic-out").exists()
