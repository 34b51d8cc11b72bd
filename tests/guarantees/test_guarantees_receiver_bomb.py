"""Guarantee: `unitcost serve` bounds a request's size while decompressing it, so a small gzip body
that decompresses to gigabytes (a "gzip bomb") is refused without the receiver ever holding it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest

from unitcost.exporters.receiver import MAX_BODY

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the receiver's RSS in /proc")


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _bomb(decompressed: int) -> bytes:
    """A gzip body of ``decompressed`` zero bytes, made without holding them."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [deflater.compress(block) for _ in range(decompressed >> 20)]
    return b"".join(parts) + deflater.flush()


def test_a_gzip_bomb_is_refused_with_the_receivers_memory_bounded(tmp_path):
    body = _bomb(2560 << 20)  # 2.5 GiB of zeros: about 2.5 MB compressed
    assert len(body) < 3 << 20
    proc = subprocess.Popen(
        [sys.executable, "-c", "from unitcost.cli.main import cli; cli()", "serve", "--db", str(tmp_path / "r.db"),
         "--port", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "UNITCOST_SERVE_TOKEN": ""},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1/traces", line)
        assert match, line
        baseline = _peak_rss_bytes(proc.pid)
        request = urllib.request.Request(
            f"http://127.0.0.1:{match.group(1)}/v1/traces", data=body, method="POST",
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code in (400, 413)
        assert b"too large" in refused.value.read()
        grown = _peak_rss_bytes(proc.pid) - baseline
        # About twice the limit on a decompressed body (zlib grows its output buffer by doubling), plus
        # the compressed body: bounded, where decompressing first grew the process by 2.6 GB.
        assert grown < 2 * MAX_BODY + 64 * 1024 * 1024, f"the receiver grew by {grown / 2**20:.0f} MiB"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
