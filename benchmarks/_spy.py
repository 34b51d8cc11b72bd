"""Reading py-spy's collapsed stacks: how many samples went to unitcost, and to what in it.

A sample is unitcost's when the innermost frame that belongs to unitcost or to a provider SDK
belongs to unitcost (frames of the standard library, OpenTelemetry, wrapt or sqlite-utils count for
whoever called them); a stack with neither is a background thread of OpenTelemetry's batch
processor, which only runs unitcost's exporter here, so it is unitcost's too.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_UNITCOST = ("sdk/", "exporters/", "cli/", "unitcost/")
_PROVIDERS = ("openai/", "anthropic/", "httpx2/", "httpcore2/", "httpx/", "jiter/")
_BENCH = ("benchmarks/",)


def _owner(path: str) -> str | None:
    if path.startswith(_UNITCOST) or "/unitcost/" in path:
        return "unitcost"
    if path.startswith(_PROVIDERS):
        return "provider"
    return None


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, ""
    return m["func"], m["file"]


def summarize(collapsed: Path, top: int = 15) -> dict[str, Any]:
    total = 0
    owners: Counter[str] = Counter()
    entry: Counter[str] = Counter()  # the outermost unitcost function of each unitcost sample
    leaf: Counter[str] = Counter()  # where the time is actually spent (innermost frame) in those samples
    inclusive: Counter[str] = Counter()  # every function on the stack of a unitcost sample, once per sample
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_parse(f) for f in stack.split(";")]
        total += count
        owner = None
        for _func, file in reversed(frames):
            owner = _owner(file)
            if owner:
                break
        if owner is None:
            is_batch_thread = any("opentelemetry/sdk" in file for _, file in frames)
            owner = "unitcost" if is_batch_thread else "other"
        owners[owner] += count
        if owner != "unitcost":
            continue
        first = next(((f, p) for f, p in frames if _owner(p) == "unitcost"), frames[0])
        entry[f"{first[0]} ({first[1]})"] += count
        func, file = frames[-1]
        leaf[f"{func} ({file})"] += count
        for name in {f"{func} ({file})" for func, file in frames}:
            inclusive[name] += count
    return {
        "samples": total,
        "share": {k: v / total for k, v in owners.items()} if total else {},
        "entry": entry.most_common(top),
        "leaf": leaf.most_common(top),
        "inclusive": inclusive.most_common(top),
    }


def render(title: str, summary: dict[str, Any]) -> str:
    total = summary["samples"] or 1
    lines = [f"### {title}", "", f"{summary['samples']} samples; share by owner: "
             + ", ".join(f"{k} {v:.1%}" for k, v in sorted(summary["share"].items(), key=lambda kv: -kv[1]))]
    lines += ["", "unitcost samples by entry point (outermost unitcost frame):", ""]
    lines += [f"- {count / total:6.1%}  {name}" for name, count in summary["entry"]]
    lines += ["", "functions on the stack of unitcost samples (inclusive):", ""]
    lines += [f"- {count / total:6.1%}  {name}" for name, count in summary["inclusive"]]
    lines += ["", "unitcost samples by innermost frame (where the time is spent):", ""]
    lines += [f"- {count / total:6.1%}  {name}" for name, count in summary["leaf"]]
    return "\n".join(lines)
