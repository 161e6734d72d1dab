"""docs/deploy.md: the systemd unit and the container entry point are valid as written."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click

from coolchic.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def _block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DEPLOY, re.DOTALL)
    assert match, language
    return match.group(1)


def _parse_watch_command(argv: list[str], inbox: Path) -> click.Context:
    """Parse ``coolchic <group options> watch ...`` with click, inbox replaced by a real one."""
    assert Path(argv[0]).name == "coolchic", argv
    split = argv.index("watch")
    group = cli.make_context("coolchic", [*argv[1:split], "watch"])
    watch = cli.get_command(group, "watch")
    assert watch is not None
    rest = [str(inbox) if arg.endswith("/inbox") else arg for arg in argv[split + 1 :]]
    return watch.make_context("watch", rest, parent=group)


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    unit_text = _block("ini")
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(unit_text)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    watch = _parse_watch_command(argv, tmp_path)
    assert int(service["TimeoutStopSec"]) > watch.params["grace_seconds"]
    assert service["KillSignal"] == "SIGTERM"

    analyze = shutil.which("systemd-analyze")
    coolchic = shutil.which("coolchic")
    if analyze and coolchic:  # where systemd is installed, it must accept the unit
        path = tmp_path / "coolchic-watch.service"
        path.write_text(unit_text.replace(argv[0], coolchic))
        result = subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
        )
        complaints = [
            line for line in result.stderr.splitlines() if "coolchic-watch.service" in line
        ]
        assert result.returncode == 0 and not complaints, result.stderr


def test_container_entry_point_is_valid(tmp_path: Path) -> None:
    dockerfile = _block("dockerfile")
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert entry, dockerfile
    argv = json.loads(entry.group(1))  # the exec form: signals reach coolchic itself
    watch = _parse_watch_command([arg.replace("/data/inbox", "/x/inbox") for arg in argv], tmp_path)
    stop_timeout = re.search(r"--stop-timeout (\d+)", DEPLOY)
    assert stop_timeout and int(stop_timeout.group(1)) > watch.params["grace_seconds"]
