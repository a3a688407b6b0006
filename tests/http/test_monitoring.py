"""The shipped Prometheus rules and Grafana dashboard (docs/ops/): promtool accepts the rules,
and every avatarstack series they or the dashboard name is exported by a running server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kb_helpers import MANUAL_V1, build, fast_hasher, ingest, login, search
from prometheus_client.parser import text_string_to_metric_families
from ws_helpers import connect

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "ops" / "prometheus-rules.yml"
RULES_TEST = ROOT / "docs" / "ops" / "prometheus-rules-test.yml"
DASHBOARD = ROOT / "docs" / "ops" / "grafana-dashboard.json"
_SERIES = re.compile(r"\b(avatarstack_[a-z0-9_]+)")


def named_series() -> set[str]:
    """The avatarstack_* series the rules and the dashboard's queries use."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return set(_SERIES.findall(RULES.read_text(encoding="utf-8"))) | {
        name for query in queries for name in _SERIES.findall(query)
    }


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install prometheus", pytrace=False)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_on_the_series_they_watch() -> None:
    """promtool's rule unit tests: the error budget, pool exhaustion, a failing readiness check."""
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_uses_the_recorded_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    recorded = set(re.findall(r"record: (\S+)", RULES.read_text(encoding="utf-8")))
    queries = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = set(re.findall(r"avatarstack:[a-z0-9_:]+", queries))
    assert used <= recorded
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))


async def test_every_series_the_rules_and_dashboard_name_is_exported(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(providers_={"password_hasher": fast_hasher()})
    editor = await login(client, "ed@example.com", "editor")
    member = await login(client, "mo@example.com", "member")
    await ingest(client, editor, MANUAL_V1)
    await build(client, editor)
    await search(client, member, "how often does the machine need descaling")
    await search(client, member, "quantum chromodynamics lattice")
    tab = await connect(client, member["Authorization"].split(" ", 1)[1])
    await tab.open()
    assert (await client.get("/readyz")).status == 200

    text = await (await client.get("/metrics")).text()
    await tab.ws.close()
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    missing = sorted(named_series() - exported)
    assert not missing, f"named in docs/ops but not exported: {missing}"
    assert 'avatarstack_readiness_check_up{check="storage"} 1.0' in text
    assert 'avatarstack_jobs_finished_total{kind="kb.build",outcome="succeeded"} 1.0' in text
    assert "avatarstack_ws_connections 1.0" in text
