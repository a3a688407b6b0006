"""The password hasher contract over the argon2id and scrypt adapters.

Both run with cheap parameters here, except the responsiveness test, which hashes at the
OWASP argon2id parameters to show the event loop keeps ticking while the work runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.adapters.scrypt import ScryptPasswordHasher
from avatarstack.ports.errors import InvalidInputError

Hasher = Argon2PasswordHasher | ScryptPasswordHasher
Factory = Callable[..., Hasher]

FACTORIES: dict[str, Factory] = {
    "argon2id": lambda **kw: Argon2PasswordHasher(
        memory_cost=1024, time_cost=1, parallelism=1, **kw
    ),
    "scrypt": lambda **kw: ScryptPasswordHasher(n=2**10, r=8, p=1, **kw),
}

#: well-formed hashes in the other scheme's format (hand-written)
FOREIGN = {
    "argon2id": "scrypt$1024$8$1$c2FsdHNhbHRzYWx0c2FsdA==$"
    + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    "scrypt": "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE",
}


@pytest.fixture(params=sorted(FACTORIES))
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(scheme: str) -> Factory:
    return FACTORIES[scheme]


@pytest.fixture
def hasher(make: Factory) -> Hasher:
    return make()


async def test_a_hash_verifies_its_password(hasher: Hasher) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert await hasher.verify(stored, "correct horse battery staple") is True
    assert "correct horse" not in stored
    assert hasher.needs_rehash(stored) is False


async def test_a_wrong_password_does_not_verify(hasher: Hasher) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert await hasher.verify(stored, "correct horse battery stapler") is False
    assert await hasher.verify(stored, "") is False


@pytest.mark.parametrize("password", ["pässwörd ✓", "密码密码密码", "🔑🔐🗝️ emoji", "  spaces  "])
async def test_unicode_passwords_round_trip(hasher: Hasher, password: str) -> None:
    stored = await hasher.hash(password)

    assert await hasher.verify(stored, password) is True
    assert await hasher.verify(stored, password.strip() + "x") is False


async def test_two_hashes_of_one_password_differ_by_salt(hasher: Hasher) -> None:
    first, second = await asyncio.gather(hasher.hash("same"), hasher.hash("same"))

    assert first != second
    assert await hasher.verify(first, "same")
    assert await hasher.verify(second, "same")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a hash",
        "$",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$%%%$%%%",
        "scrypt$",
        "scrypt$1024$8$1$!!!$!!!",
        "scrypt$1000$8$1$c2FsdA==$c2FsdA==",
        "scrypt$1048576$1024$1$c2FsdHNhbHRzYWx0c2FsdA==$c2FsdHNhbHRzYWx0c2FsdA==",
        "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5f1s2S3cH7e2B6Q2u7QyI1vVfK4y7xe",
        "x" * 5000,
    ],
)
async def test_a_malformed_hash_verifies_nothing_and_needs_rehash(
    hasher: Hasher, garbage: str
) -> None:
    assert await hasher.verify(garbage, "password") is False
    assert hasher.needs_rehash(garbage) is True


async def test_the_other_schemes_hash_is_refused_and_needs_rehash(
    hasher: Hasher, scheme: str
) -> None:
    other = "scrypt" if scheme == "argon2id" else "argon2id"
    foreign = await FACTORIES[other]().hash("password")

    assert await hasher.verify(foreign, "password") is False
    assert hasher.needs_rehash(foreign) is True
    assert await hasher.verify(FOREIGN[scheme], "password") is False


async def test_a_hash_with_other_parameters_needs_rehash(make: Factory, scheme: str) -> None:
    weak = make()
    stronger = (
        Argon2PasswordHasher(memory_cost=2048, time_cost=1, parallelism=1)
        if scheme == "argon2id"
        else ScryptPasswordHasher(n=2**11, r=8, p=1)
    )
    stored = await weak.hash("password")

    assert stronger.needs_rehash(stored) is True
    assert await stronger.verify(stored, "password") is True  # old hashes keep working


async def test_over_long_passwords_are_refused(hasher: Hasher) -> None:
    longest = "a" * 1024
    stored = await hasher.hash(longest)

    with pytest.raises(InvalidInputError):
        await hasher.hash("a" * 1025)
    assert await hasher.verify(stored, longest) is True
    assert await hasher.verify(stored, longest + "a") is False
    assert await hasher.verify(stored, "a" * 1_000_000) is False


async def test_unencodable_passwords_are_refused(hasher: Hasher) -> None:
    stored = await hasher.hash("password")

    with pytest.raises(InvalidInputError):
        await hasher.hash("lone \ud800 surrogate")
    assert await hasher.verify(stored, "lone \ud800 surrogate") is False


@pytest.mark.parametrize("cap", [1, 2])
async def test_no_more_hashes_run_at_once_than_the_cap(make: Factory, cap: int) -> None:
    hasher = make(max_concurrent=cap)
    stored = await hasher.hash("password")

    results = await asyncio.gather(
        *(hasher.hash(f"password {i}") for i in range(6)),
        *(hasher.verify(stored, "password") for _ in range(4)),
    )

    assert len(set(results[:6])) == 6
    assert all(results[6:])
    assert 1 <= hasher.peak_in_flight <= cap
    assert hasher.in_flight == 0


async def test_a_cancelled_caller_does_not_free_its_slot_early(make: Factory) -> None:
    hasher = make(max_concurrent=1)
    first = asyncio.ensure_future(hasher.hash("first"))
    await asyncio.sleep(0)
    first.cancel()

    await asyncio.gather(*(hasher.hash(f"p{i}") for i in range(3)))

    assert hasher.peak_in_flight == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_event_loop_keeps_ticking_while_argon2_hashes_at_owasp_cost() -> None:
    hasher = Argon2PasswordHasher()  # OWASP: 19 MiB, t=2, p=1
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    hashes = await asyncio.gather(*(hasher.hash(f"password {i}") for i in range(8)))
    elapsed = time.monotonic() - started
    done.set()
    await ticking

    assert len(set(hashes)) == 8
    assert hashes[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert len(gaps) >= elapsed / 0.1  # the loop ran all along …
    assert max(gaps) < 0.1  # … and never stalled
