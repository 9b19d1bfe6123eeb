"""The README's "Your own data" commands, typed as a new user types them after `make demo`.

Each ``spectraldl`` line of that section's shell blocks runs in bash with the
environment activated as the README says, on a small tree of real LAMOST files
standing in for the user's ``/data/lamost/dr5/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from classify_helpers import trained_model

from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import read_predictions

README = Path(__file__).resolve().parents[1] / "README.md"
NEEDS_THE_NETWORK = ("ssap-import",)
"""Commands of the section that reach a remote service: checked for --help only."""


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _commands(section: str) -> list[str]:
    """The ``spectraldl`` lines of the section's ``sh`` blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("spectraldl "):
                commands.append(line)
    return commands


def _bash(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    activate = Path(sys.prefix) / "bin" / "activate"
    return subprocess.run(
        ["bash", "-c", f". {activate} && {line}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_your_own_data_commands_work_as_written(tmp_path: Path) -> None:
    tree = tmp_path / "lamost" / "dr5"
    for item in bundled_files(archive="lamost")[:20]:
        target = tree / item.path.parent.name / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, target)
    model = trained_model(tmp_path / "trained")
    commands = _commands(_section("Your own data"))
    assert len(commands) >= 4, commands
    work = tmp_path / "work"
    work.mkdir()
    for command in commands:
        line = command.replace("/data/lamost/dr5/", f"{tree}/").replace("my-model/", f"{model}/")
        if any(f"spectraldl {name} " in line for name in NEEDS_THE_NETWORK):
            name = line.split()[1]
            result = _bash(f"spectraldl {name} --help", work)
        else:
            result = _bash(line, work)
        assert result.returncode == 0, (line, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
    table = read_predictions(work / "dr5.parquet")
    assert len(table) >= 19 and set(table["origin"]) == {"real"}
    assert (work / "dr5-candidates.fits").exists()
    assert (work / "dr5-gallery" / "index.html").exists()


@pytest.mark.parametrize("title", ["The two commands", "Your own data", "Using it"])
def test_every_command_the_readme_names_exists(title: str) -> None:
    from click.testing import CliRunner

    from spectraldl.cli import main

    for command in _commands(_section(title)):
        name = command.split()[1]
        if name.startswith("-"):
            continue
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (command, result.output)
