"""docs/recipes.md's Arize Phoenix recipe, run as written against a real Phoenix (the one
tests/exporters/test_phoenix.py starts: `bash .ci/phoenix` installs it), on the ports the test gave
it instead of 6006, and its output compared with the page's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from test_phoenix import Phoenix, phoenix  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "recipes.md"


def _phoenix_section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("## Arize Phoenix")
    return text[start: text.index("\n## ", start + 1)]


def test_the_recipe_installs_the_phoenix_ci_runs() -> None:
    install = re.findall(r"```bash\n(.*?)```", _phoenix_section(), re.S)[0]
    version = re.search(r"^version=(\S+)$", (ROOT / ".ci" / "phoenix").read_text(), re.M)
    assert version and f"arize-phoenix=={version.group(1)}" in install


def test_the_phoenix_recipe_prints_what_the_page_shows(phoenix: Phoenix, tmp_path: Path) -> None:  # noqa: F811
    section = _phoenix_section()
    run_block = re.findall(r"```bash\n(.*?)```", section, re.S)[1]
    [shown] = re.findall(r"```text\n(.*?)```", section, re.S)
    script = run_block.replace("http://localhost:6006", phoenix.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == shown.strip().splitlines(), (done.stdout, done.stderr)
