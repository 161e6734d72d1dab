"""The README's commands, CI and the shipped samples stay consistent."""

from __future__ import annotations

import re
from pathlib import Path

from coolchic.io import inspect_yuv, read_png, read_yuv_frame

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command() -> None:
    commands = _readme_commands()
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, commands
    assert test_commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_main_command_uses_shipped_samples() -> None:
    main_command = next(c for c in _readme_commands() if "pytest" not in c)
    samples = re.findall(r"samples/\S+", main_command)
    assert samples
    for sample in samples:
        assert (ROOT / sample).is_file(), sample


def test_shipped_samples_are_valid_and_small() -> None:
    yuv_files = sorted((ROOT / "samples").glob("*.yuv"))
    assert {inspect_yuv(p).fields.bit_depth for p in yuv_files} == {8, 10}
    for path in yuv_files:
        assert inspect_yuv(path).frames == 1
        assert read_yuv_frame(path).width == 128
        assert path.stat().st_size < 100_000
    assert read_png(ROOT / "samples" / "hills-synthetic.png").format == "rgb"
