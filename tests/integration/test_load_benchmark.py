"""benchmarks/load.py keeps running: two seconds with two users on the real PostgreSQL and a
Chroma server, and it reports every figure the criteria need. The figures themselves are not
checked here (speed goals live in benchmarks/, never in timed tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "load.py"


@pytest.mark.postgres
def test_the_mixed_load_test_runs_and_reports_the_criteria(postgres_url: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AVATARSTACK_")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", "2", "--warmup", "1", "--users", "2"],
        cwd=ROOT,
        env=environment | {"AVATARSTACK_TEST_POSTGRES_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for figure in (
        "p50 ms",
        "error rate",
        "database statements (both instances)",
        "efficiency",
        "utilisation",
        "event-loop lag",
        "criteria: query p99 < 50 ms",
        "within all the criteria",  # the highest load, or none
    ):
        assert figure in out, f"{figure!r} missing from:\n{out}"
    assert "search" in out
    assert "ask" in out
