"""The measured figures of README.md and docs/ agree with the benchmark JSON they come from."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _docs_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spectraldl_docs_tool", ROOT / "tools" / "docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


docs = _docs_tool()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the pages and the benchmark JSON, to change without touching the repo."""
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    for page in (ROOT / "docs").glob("*.md"):
        shutil.copy(page, tmp_path / "docs" / page.name)
    shutil.copytree(ROOT / docs.BENCHMARKS, tmp_path / docs.BENCHMARKS)
    return tmp_path


def test_pages_agree_with_their_json() -> None:
    """`make docs` has nothing to change: every measured region is what its JSON says."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_page_with_figures_has_regions() -> None:
    """The pages quoting benchmarks carry regions, and every region names a renderer."""
    names: set[str] = set()
    for path in docs.pages(ROOT):
        names |= {m.group(1) for m in docs.REGION.finditer(path.read_text())}
    assert names <= set(docs.RENDERERS)
    for page in (
        "README.md",
        "docs/classify.md",
        "docs/training.md",
        "docs/simulate.md",
        "docs/explore.md",
        "docs/web.md",
    ):
        assert "<!-- measured: " in (ROOT / page).read_text(), page


def test_a_changed_json_is_caught_and_regenerated(checkout: Path) -> None:
    """Change one measured figure: the check names the page, regenerating writes the new one."""
    path = checkout / docs.BENCHMARKS / "web.json"
    data = json.loads(path.read_text())
    for row in data["rows"]:
        if row["measure"] == "GET /api/health (baseline)":
            row["requests_per_s"] = 4321.0
    path.write_text(json.dumps(data))
    problems = docs.run(checkout, check=True)
    assert len(problems) == 1
    assert "docs/web.md" in problems[0] and "4321 requests/s" in problems[0]
    assert "4321" not in (checkout / "docs" / "web.md").read_text()
    docs.run(checkout, check=False)
    assert (
        "| `GET /api/health` (baseline) | 4321 requests/s |"
        in (checkout / "docs" / "web.md").read_text()
    )
    assert docs.run(checkout, check=True) == []


def test_a_hand_edited_figure_is_caught(checkout: Path) -> None:
    """Editing a figure inside a region by hand is drift too."""
    readme = checkout / "README.md"
    text = readme.read_text()
    assert "9.94 million/s" in text
    readme.write_text(text.replace("9.94 million/s", "9.06 million/s"))
    problems = docs.run(checkout, check=True)
    assert len(problems) == 1 and "README.md" in problems[0]
    assert "tools/docs.py" in str(docs.__file__)


def test_runs_timed_in_turn_with_the_baseline_give_the_ratio(checkout: Path) -> None:
    """Where the benchmark timed the predictor and the loop in turn, the pages quote the median
    of those ratios and their range, not the best-to-best ratio of one lucky run."""
    path = checkout / docs.BENCHMARKS / "classify.json"
    data = json.loads(path.read_text())
    for row in data["rows"]:
        if row.get("method") == docs.FP32_DEFAULT and row.get("model") == "cnn":
            row["ratio"] = 2.5
            row["paired_ratios"] = [1.5, 1.9, 1.7, 1.6, 1.8] if row["threads"] > 1 else [1.2]
    path.write_text(json.dumps(data))
    docs.run(checkout, check=False)
    readme = (checkout / "README.md").read_text()
    assert (
        "1.70x on 2 threads (median of 5 runs in turn with the baseline, 1.50-1.90; 1.20x on one)"
        in readme
    )
    assert "2.50x" not in readme
    assert "| 1.70 (median of 5 runs in turn" in (checkout / "docs" / "classify.md").read_text()


def test_unknown_region_and_missing_row_are_errors(checkout: Path) -> None:
    page = checkout / "docs" / "extra.md"
    page.write_text("x <!-- measured: no-such-figure -->1<!-- /measured -->\n")
    with pytest.raises(docs.DocsError, match="no-such-figure"):
        docs.run(checkout, check=True)
    page.unlink()
    path = checkout / docs.BENCHMARKS / "explore.json"
    data = json.loads(path.read_text())
    data["rows"] = [r for r in data["rows"] if r["backend"] != "opentsne"]
    path.write_text(json.dumps(data))
    with pytest.raises(docs.DocsError, match="explore"):
        docs.run(checkout, check=True)


def test_shipped_benchmarks_say_where_and_when() -> None:
    """Every shipped JSON has the machine and the date the tables quote."""
    for path in sorted((ROOT / docs.BENCHMARKS).glob("*.json")):
        data = json.loads(path.read_text())
        assert data["machine"]["cpu"], path.name
        assert len(data["date"]) == 10, path.name
    text = (ROOT / "README.md").read_text()
    stamp = (
        r"Measured on another machine than yours: \d{4}-\d\d-\d\d on "
        r"AMD EPYC( \((no )?native bf16\))?, 2 cores"
    )
    assert re.search(stamp, text)


def test_every_command_help_has_an_example() -> None:
    """`spectraldl COMMAND --help` ends with an example for every command and subcommand."""
    import click
    from click.testing import CliRunner

    from spectraldl.cli import main

    def walk(group: click.Group, ctx: click.Context, prefix: list[str]) -> list[list[str]]:
        found = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append([*prefix, name])
            if isinstance(command, click.Group):
                found += walk(command, click.Context(command), [*prefix, name])
        return found

    commands = walk(main, click.Context(main), [])
    assert len(commands) >= 15
    runner = CliRunner()
    for args in commands:
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, args
        assert re.search(r"Example:\n +spectraldl ", result.output), " ".join(args)


def test_the_gpu_host_goal_is_read_from_its_run_once_there_is_one(checkout: Path) -> None:
    """Without benchmarks/gpu.sh's JSON the row says not measured; with it, its figure."""
    readme = checkout / "README.md"
    docs.run(checkout, check=False)
    assert "| GPU machine, FITS tree to predictions: >= 20 000 files/s | not measured" in (
        readme.read_text()
    )
    path = checkout / docs.BENCHMARKS / "classify-host-tree.json"
    for rate, met in ((19_999.0, "**no**"), (25_000.0, "yes")):
        rows = [
            {"section": "host-tree", "device": device, "workers": 16, "files_per_s": speed,
             "projected_dr1_min": 2_202_000 / speed / 60}
            for device, speed in (("cuda", rate), ("cpu", 9_000.0))
        ]  # fmt: skip
        machine = {"cpu": "Xeon", "cores": 16, "gpu": "NVIDIA H100 80GB HBM3"}
        path.write_text(json.dumps({"date": "2027-01-01", "machine": machine, "rows": rows}))
        docs.run(checkout, check=False)
        assert (
            f"| {docs.num(rate)} files/s with 16 workers, the network on the GPU (DR1 in "
            f"{2_202_000 / rate / 60:.1f} min) | {met} | NVIDIA H100 80GB HBM3, 2027-01-01 |"
        ) in readme.read_text()


def test_a_goal_is_marked_met_from_its_measurement(checkout: Path) -> None:
    """The README's goals table says met or not from the JSON, not by hand."""
    path = checkout / docs.BENCHMARKS / "simulate.json"
    goal = "| `simulate --archive lamost`, whole command, 2 workers: >= 1 000 files/s | "
    for rate, shown, met in ((999.0, "999", "**no**"), (1234.0, "1 234", "yes")):
        data = json.loads(path.read_text())
        for case in data["rows"]:
            if case["case"] == docs.SIMULATE_AT_SCALE and case["workers"] == 2:
                case["files_per_s"] = rate
        path.write_text(json.dumps(data))
        docs.run(checkout, check=False)
        readme = (checkout / "README.md").read_text().splitlines()
        (line,) = [r for r in readme if r.startswith(goal)]
        assert line.startswith(f"{goal}{shown} files/s making ") and f" | {met} | " in line


def _python_imports() -> list[tuple[str, str]]:
    """(page, statement) for every spectraldl import in the pages' ```python blocks."""
    found = []
    for path in docs.pages(ROOT):
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL):
            joined = re.sub(r"\([^)]*\)", lambda m: m.group(0).replace("\n", " "), block)
            for line in joined.splitlines():
                line = line.split("#")[0].strip()
                if re.match(r"(from|import) spectraldl\b", line):
                    found.append((str(path.relative_to(ROOT)), line))
    return found


def _dotted_names() -> list[tuple[str, str]]:
    """(page, name) for every `spectraldl.a.b...` the pages name in backticks."""
    found = []
    for path in docs.pages(ROOT):
        for name in re.findall(r"`(spectraldl(?:\.\w+){2,})", path.read_text()):
            found.append((str(path.relative_to(ROOT)), name))
    return found


_RESOLVE = """
import importlib, sys
failed = []
for page, kind, text in CASES:
    try:
        if kind == "import":
            exec(text, {})
        else:
            parts = text.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
                except ModuleNotFoundError:
                    continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
    except Exception as exc:
        failed.append(f"{page}: {text}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_the_pages_python_names_exist() -> None:
    """Every import in the pages' Python examples, and every dotted `spectraldl.x.y` they
    name, resolves: a renamed module cannot leave an example that fails on its first line."""
    imports = _python_imports()
    assert len(imports) >= 10
    cases = [(page, "import", line) for page, line in imports]
    cases += [(page, "name", name) for page, name in _dotted_names()]
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", f"CASES = {cases!r}\n{_RESOLVE}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 0, result.stdout + result.stderr
