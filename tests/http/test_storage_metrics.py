"""The database and event-loop series a running server exports: statement time, pool
acquisitions with and without waiting, the wait itself, and the event loop's lag."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


async def samples(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = await (await client.get("/metrics")).text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_server_exports_statement_time_pool_waits_and_event_loop_lag(
    client: Any,
) -> None:
    assert (await client.get("/api/v1/info")).status == 200  # reads the database
    await asyncio.sleep(0.25)  # the lag monitor wakes at least once
    exported = await samples(client)
    sqlite = (("backend", "sqlite"),)

    assert exported[("avatarstack_db_query_duration_seconds_count", sqlite)] >= 1
    assert exported[("avatarstack_db_query_duration_seconds_sum", sqlite)] > 0
    served = exported[("avatarstack_db_pool_acquisitions_total", (*sqlite, ("waited", "no")))]
    waited = exported[("avatarstack_db_pool_acquisitions_total", (*sqlite, ("waited", "yes")))]
    assert served >= 1
    assert waited >= 0
    assert exported[("avatarstack_db_pool_wait_seconds_count", sqlite)] == served + waited
    assert exported[("avatarstack_event_loop_lag_seconds_count", ())] >= 1
    assert ("avatarstack_event_loop_lag_last_seconds", ()) in exported


async def test_statements_are_counted_as_they_run(client: Any) -> None:
    sqlite = (("backend", "sqlite"),)
    before = (await samples(client))[("avatarstack_db_query_duration_seconds_count", sqlite)]
    for _ in range(3):
        assert (await client.get("/api/v1/info")).status == 200
    after = (await samples(client))[("avatarstack_db_query_duration_seconds_count", sqlite)]
    assert after >= before + 3
