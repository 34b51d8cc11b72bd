"""The front page and the CLI page cannot drift: their commands are run here, as a new user would.

- README.md "Two commands": the demo runs as written (`.venv/bin/unitcost demo`, with `unitcost` not
  on PATH) and its last lines name commands that run.
- README.md "The five commands that matter": each runs on the demo's store with the exit code the
  page gives it.
- README.md "Instrument an agent": the snippet compiles and names only what unitcost exports.
- docs/cli.md "A real session": each `$` command runs in order and prints what the page shows
  (task ids, times and durations aside).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import unitcost

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"


def section(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.index(heading + "\n")
    following = re.search(r"^## ", text[start + len(heading):], re.M)  # (a "# " line may be a comment in code)
    return text[start: start + len(heading) + following.start()] if following else text[start:]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def shell(command: str, cwd: Path, *, on_path: bool = True) -> subprocess.CompletedProcess[str]:
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}" if on_path else "/usr/bin:/bin"
    env = {**os.environ, "PATH": path, "COLUMNS": "100", "UNITCOST_DB": str(cwd / "not-used.db")}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as after the README's command 1: `.venv` there, the demo's store written by it."""
    folder = tmp_path_factory.mktemp("newuser")
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return folder


def test_the_two_commands_run_as_written(demo_folder: Path) -> None:
    [block] = blocks(section(ROOT / "README.md", "## Two commands"), "bash")
    install = next(line for line in block.splitlines() if line.startswith("python3 -m venv"))
    steps = install.split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -e '.[dev]'"]
    assert "pip install --quiet -e '.[dev]'" in (ROOT / ".ci" / "run").read_text()  # CI installs the same
    demo = steps[-1]
    assert demo == ".venv/bin/unitcost demo"
    done = shell(demo, demo_folder, on_path=False)  # right after install: the venv is not activated
    assert done.returncode == 0, done.stderr
    tail = done.stdout[done.stdout.index("Next:"):]
    assert "not on your PATH" in tail and "source .venv/bin/activate" in tail
    suggested = [line.strip() for line in tail.splitlines() if line.startswith("  .venv/bin/unitcost ")]
    assert len(suggested) >= 4
    for command in suggested:
        if "TASK_ID" in command or " ui " in command:  # a placeholder; a server that runs until stopped
            continue
        ran = shell(command, demo_folder, on_path=False)
        assert ran.returncode in (0, 1), (command, ran.stderr)  # check may report a breach: that is its job


def test_the_five_commands_run_on_the_demos_store(demo_folder: Path) -> None:
    assert (demo_folder / "unitcost-demo.db").exists() or shell(".venv/bin/unitcost demo", demo_folder).returncode == 0
    [block] = blocks(section(ROOT / "README.md", "## The five commands that matter"), "bash")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 5 and all(c.startswith("unitcost ") for c in commands)
    for command in commands:
        done = shell(command, demo_folder)
        # The page says what each does; `check` is a gate the demo's $0.0134 per success breaks at $0.01.
        expected = 1 if command.startswith("unitcost check") else 0
        assert done.returncode == expected, (command, done.stdout, done.stderr)
        assert done.stdout.strip()


def test_the_instrument_snippet_names_only_what_unitcost_exports() -> None:
    [code] = blocks(section(ROOT / "README.md", "## Instrument an agent"), "python")
    tree = ast.parse(code)
    used = {
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "unitcost"
    }
    assert used >= {"configure", "instrument", "task", "tool", "outcome"}
    assert used <= set(unitcost.__all__), used - set(unitcost.__all__)


def _normal(text: str) -> list[str]:
    text = re.sub(r"\b[0-9a-f]{16}\b", "<task id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", text)
    text = re.sub(r"\b\d+\.\d\ds\b", "<s>", text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_the_cli_pages_session_prints_what_the_page_shows(tmp_path: Path) -> None:
    [block] = blocks(section(ROOT / "docs" / "cli.md", "## A real session"), "text")
    steps = re.split(r"^\$ ", block, flags=re.M)[1:]
    assert len(steps) >= 6
    done = shell("unitcost demo", tmp_path)
    assert done.returncode == 0, done.stderr
    for step in steps:
        command, _, shown = step.partition("\n")
        command = re.sub(r"\s+#[^'\"]*$", "", command)  # a trailing comment
        if command.startswith("python "):
            command = shlex.join([sys.executable]) + command[len("python"):]
        ran = shell(command, tmp_path)
        assert _normal(ran.stdout + ran.stderr) == _normal(shown), command
