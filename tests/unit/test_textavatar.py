"""The text avatar's own behaviour beyond the contract: FIFO speech with real timing,
interrupt, close cancelling timers."""

from __future__ import annotations

import asyncio

import pytest

from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.core.speech import estimate_speech_seconds
from avatarstack.ports.avatar import AvatarEvent, SessionRequest
from avatarstack.ports.errors import UnavailableError
from avatarstack.testkit.clock import ManualClock

# 150 wpm: 5 words = 2 s; scale 0.01 → 20 ms
SCALE = 0.01


async def collect(provider: TextAvatarProvider, sid: str, out: list[AvatarEvent]) -> None:
    async for event in provider.events(sid):
        out.append(event)


async def test_utterances_are_spoken_one_after_the_other_in_order_with_their_duration() -> None:
    provider = TextAvatarProvider(clock=ManualClock(), speech_time_scale=SCALE)
    sid = (await provider.start_session(SessionRequest())).provider_session_id
    events: list[AvatarEvent] = []
    reader = asyncio.create_task(collect(provider, sid, events))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    a = await provider.speak(sid, "one two three four five", "repeat")
    b = await provider.speak(sid, "six seven eight nine ten", "talk")
    await asyncio.sleep(0.01)
    assert [(e.type, e.task_id) for e in events] == [("speaking", a)]
    while len(events) < 4:  # noqa: ASYNC110 - waiting on real speech timing
        await asyncio.sleep(0.005)
    elapsed = loop.time() - t0
    assert [(e.type, e.task_id) for e in events] == [
        ("speaking", a),
        ("idle", a),
        ("speaking", b),
        ("idle", b),
    ]
    assert events[0].duration_seconds == estimate_speech_seconds("one two three four five") == 2.0
    assert elapsed >= 0.04
    await provider.stop(sid)
    await asyncio.wait_for(reader, 1)
    assert events[-1].type == "closed"
    assert events[-1].reason == "stopped"
    await provider.close()


async def test_interrupt_cuts_the_current_utterance_drops_the_queue_and_reports_idle() -> None:
    provider = TextAvatarProvider(clock=ManualClock(), speech_time_scale=1.0)
    sid = (await provider.start_session(SessionRequest())).provider_session_id
    events: list[AvatarEvent] = []
    reader = asyncio.create_task(collect(provider, sid, events))
    a = await provider.speak(sid, "a long sentence that takes seconds to say", "repeat")
    await provider.speak(sid, "and another one", "repeat")
    await asyncio.sleep(0.01)
    await provider.interrupt(sid)
    await asyncio.sleep(0.05)
    assert [(e.type, e.task_id) for e in events] == [("speaking", a), ("idle", a)]
    c = await provider.speak(sid, "fresh start", "talk")
    await asyncio.sleep(0.01)
    assert (events[-1].type, events[-1].task_id) == ("speaking", c)
    await provider.close()
    await asyncio.wait_for(reader, 1)
    assert events[-1].type == "closed"
    assert events[-1].reason == "shutdown"
    with pytest.raises(UnavailableError):
        await provider.start_session(SessionRequest())


async def test_close_cancels_speech_timers_and_late_subscribers_see_closed() -> None:
    provider = TextAvatarProvider(clock=ManualClock(), speech_time_scale=1.0)
    sid = (await provider.start_session(SessionRequest())).provider_session_id
    await provider.speak(sid, "this would take a while to say out loud", "repeat")
    await asyncio.sleep(0.01)
    pending = [t for t in asyncio.all_tasks() if "_speak_queue" in repr(t.get_coro())]
    assert pending
    await provider.close()
    assert all(t.done() for t in pending)
    late = [e async for e in provider.events(sid)]
    assert [e.type for e in late] == ["speaking", "closed"]
    assert await provider.active_sessions() == []
