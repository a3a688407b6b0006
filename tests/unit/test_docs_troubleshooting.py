"""docs/troubleshooting.md names every log event written at warning level or above."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "avatarstack"
GUIDE = ROOT / "docs" / "troubleshooting.md"

#: ``log.warning("event", …)``, ``self._log.error(\n    "event"``, ``jlog.exception("event")``…
_CALL = re.compile(r"\.(?:warning|error|exception|critical)\(\s*\"([a-z0-9_.]+)\"")


def logged_at_warning_or_above() -> dict[str, str]:
    events: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for match in _CALL.finditer(path.read_text(encoding="utf-8")):
            events.setdefault(match[1], str(path.relative_to(ROOT)))
    return events


def test_the_scan_finds_the_events_it_should() -> None:
    events = logged_at_warning_or_above()
    assert {"database_not_ready", "job.failed", "unhandled_error", "mail_failed"} <= set(events)
    assert len(events) > 40


def test_every_warning_or_error_event_is_in_the_troubleshooting_guide() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z0-9_.]+)`", guide))
    missing = {e: where for e, where in logged_at_warning_or_above().items() if e not in documented}
    assert not missing, f"add these events to docs/troubleshooting.md: {missing}"
