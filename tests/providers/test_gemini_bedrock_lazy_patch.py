"""``unitcost.instrument()`` never imports google-genai or botocore itself: when the application
imports them later, they are patched then; ``uninstrument()`` puts the originals back. In a fresh
interpreter, so that nothing this test run imported counts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import import_or_fail

import_or_fail("google.genai")
import_or_fail("boto3")

PROGRAM = textwrap.dedent(
    """
    import sys
    import unitcost

    unitcost.configure(service_name="lazy", db=sys.argv[1])
    unitcost.instrument()
    assert "google.genai" not in sys.modules and "botocore" not in sys.modules, "imported by unitcost"

    import boto3
    import wrapt
    from botocore.client import BaseClient
    from google.genai.models import AsyncModels, Models

    def methods():
        return [vars(BaseClient)["_make_api_call"]] + [
            vars(cls)[name] for cls in (Models, AsyncModels)
            for name in ("_generate_content", "_generate_content_stream")
        ]

    assert all(isinstance(m, wrapt.FunctionWrapper) for m in methods()), "not patched on import"
    unitcost.uninstrument()
    assert not any(isinstance(m, wrapt.FunctionWrapper) for m in methods()), "not restored"
    unitcost.shutdown()
    print("ok")
    """
)


def test_sdks_imported_after_instrument_are_patched_then(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path / "lazy.db")], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
