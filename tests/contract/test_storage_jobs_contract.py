"""The storage contract of the jobs context (see test_storage_contract.py)."""

from __future__ import annotations

import asyncio

from storage_support import at, claim, committed, make_job

from avatarstack.ports.storage import Job, Storage

# --------------------------------------------------------------------------- jobs


async def enqueue(storage: Storage, *jobs: Job) -> None:
    async with committed(storage) as uow:
        for job in jobs:
            await uow.jobs.enqueue(job)


async def get_job(storage: Storage, job_id: str) -> Job:
    async with storage.unit_of_work() as uow:
        job = await uow.jobs.get(job_id)
    assert job is not None
    return job


async def test_an_enqueued_job_round_trips(storage: Storage) -> None:
    job = make_job(owner_id="user-1", max_attempts=5, run_at=at(5))
    await enqueue(storage, job)
    assert await get_job(storage, job.id) == job
    async with storage.unit_of_work() as uow:
        assert await uow.jobs.get("missing") is None


async def test_claim_takes_the_oldest_due_job_and_leases_it(storage: Storage) -> None:
    late = make_job(run_at=at(10))
    early = make_job(run_at=at(5))
    future = make_job(run_at=at(100))
    await enqueue(storage, late, early, future)

    claimed = await claim(storage, "w1", at(20), lease_seconds=30)
    assert claimed == early.model_copy(
        update={
            "status": "running",
            "worker_id": "w1",
            "lease_expires_at": at(50),
            "attempts": 1,
            "updated_at": at(20),
        }
    )
    assert await get_job(storage, early.id) == claimed
    second = await claim(storage, "w1", at(20))
    assert second is not None
    assert second.id == late.id
    assert await claim(storage, "w1", at(20)) is None


async def test_a_job_that_is_not_yet_due_is_not_claimed(storage: Storage) -> None:
    job = make_job(run_at=at(60))
    await enqueue(storage, job)
    assert await claim(storage, "w1", at(59)) is None
    claimed = await claim(storage, "w1", at(60))
    assert claimed is not None
    assert claimed.id == job.id


async def test_claim_honours_the_kinds_filter(storage: Storage) -> None:
    ingest = make_job(kind="ingest", run_at=at(1))
    email = make_job(kind="email", run_at=at(2))
    await enqueue(storage, ingest, email)
    assert await claim(storage, "w1", at(10), kinds=[]) is None
    assert await claim(storage, "w1", at(10), kinds=["video"]) is None
    claimed = await claim(storage, "w1", at(10), kinds=["email", "video"])
    assert claimed is not None
    assert claimed.id == email.id
    claimed = await claim(storage, "w1", at(10))
    assert claimed is not None
    assert claimed.id == ingest.id


async def test_only_the_holder_can_heartbeat_a_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1), lease_seconds=30)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w2", at(10), 30, progress=0.9) is False
        assert await uow.jobs.heartbeat(job.id, "w1", at(10), 30, progress=0.5) is True
    stored = await get_job(storage, job.id)
    assert stored.lease_expires_at == at(40)
    assert stored.progress == 0.5
    assert stored.updated_at == at(10)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w1", at(20), 60) is True
        assert await uow.jobs.heartbeat("missing", "w1", at(20), 60) is False
    stored = await get_job(storage, job.id)
    assert stored.lease_expires_at == at(80)
    assert stored.progress == 0.5


async def test_completing_a_job_records_its_result(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.complete(job.id, "w2", at(5), {"ignored": True}) is False
        assert await uow.jobs.complete(job.id, "w1", at(5), {"chunks": 4}) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "succeeded"
    assert stored.progress == 1.0
    assert stored.result == {"chunks": 4}
    assert stored.lease_expires_at is None
    assert stored.updated_at == at(5)
    async with committed(storage) as uow:
        assert await uow.jobs.complete(job.id, "w1", at(6)) is False
    assert await claim(storage, "w2", at(1000)) is None


async def test_failing_with_a_retry_time_requeues_the_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w2", at(2), "not mine", retry_at=at(3)) is False
        assert await uow.jobs.fail(job.id, "w1", at(2), "boom", retry_at=at(60)) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "queued"
    assert stored.error == "boom"
    assert stored.worker_id is None
    assert stored.lease_expires_at is None
    assert stored.run_at == at(60)
    assert stored.attempts == 1
    assert await claim(storage, "w2", at(59)) is None
    retried = await claim(storage, "w2", at(60))
    assert retried is not None
    assert retried.id == job.id
    assert retried.attempts == 2
    assert retried.worker_id == "w2"
    assert retried.error is None


async def test_failing_without_a_retry_time_fails_the_job(storage: Storage) -> None:
    job = make_job()
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w1", at(2), "fatal", retry_at=None) is True
    stored = await get_job(storage, job.id)
    assert stored.status == "failed"
    assert stored.error == "fatal"
    assert stored.lease_expires_at is None
    assert await claim(storage, "w2", at(1000)) is None


async def test_failing_with_a_retry_time_but_no_attempts_left_fails_the_job(
    storage: Storage,
) -> None:
    job = make_job(max_attempts=1)
    await enqueue(storage, job)
    await claim(storage, "w1", at(1))
    async with committed(storage) as uow:
        assert await uow.jobs.fail(job.id, "w1", at(2), "boom", retry_at=at(3)) is True
    assert (await get_job(storage, job.id)).status == "failed"
    assert await claim(storage, "w2", at(1000)) is None


async def test_a_job_with_an_expired_lease_is_reclaimed_by_another_worker(
    storage: Storage,
) -> None:
    job = make_job(max_attempts=3)
    await enqueue(storage, job)
    await claim(storage, "w1", at(0), lease_seconds=30)
    assert await claim(storage, "w2", at(10)) is None
    assert await claim(storage, "w2", at(30)) is None
    reclaimed = await claim(storage, "w2", at(31), lease_seconds=30)
    assert reclaimed is not None
    assert reclaimed.id == job.id
    assert reclaimed.worker_id == "w2"
    assert reclaimed.attempts == 2
    assert reclaimed.lease_expires_at == at(61)
    async with committed(storage) as uow:
        assert await uow.jobs.heartbeat(job.id, "w1", at(32), 30) is False
        assert await uow.jobs.complete(job.id, "w1", at(32)) is False
        assert await uow.jobs.complete(job.id, "w2", at(32)) is True


async def test_exhausted_jobs_are_not_claimed_and_fail_exhausted_marks_them_failed(
    storage: Storage,
) -> None:
    exhausted = make_job(max_attempts=1, run_at=at(0))
    healthy = make_job(max_attempts=1, run_at=at(1))
    await enqueue(storage, exhausted, healthy)
    first = await claim(storage, "w1", at(0), lease_seconds=30)
    assert first is not None
    assert first.id == exhausted.id
    await claim(storage, "w1", at(1), lease_seconds=300)
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(30)) == 0
    assert await claim(storage, "w2", at(31)) is None
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(31)) == 1
    stored = await get_job(storage, exhausted.id)
    assert stored.status == "failed"
    assert stored.error
    assert stored.lease_expires_at is None
    assert stored.updated_at == at(31)
    assert (await get_job(storage, healthy.id)).status == "running"
    async with committed(storage) as uow:
        assert await uow.jobs.fail_exhausted(at(32)) == 0


async def test_concurrent_workers_never_receive_the_same_job(storage: Storage) -> None:
    jobs = [make_job(run_at=at(i)) for i in range(20)]
    await enqueue(storage, *jobs)

    async def worker(name: str) -> list[str]:
        taken: list[str] = []
        while (job := await claim(storage, name, at(100), lease_seconds=600)) is not None:
            assert job.worker_id == name
            taken.append(job.id)
        return taken

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(8)))
    claimed = [job_id for taken in results for job_id in taken]
    assert len(claimed) == len(set(claimed))
    assert sorted(claimed) == sorted(job.id for job in jobs)


async def test_concurrent_single_claims_hand_out_distinct_jobs(storage: Storage) -> None:
    jobs = [make_job(run_at=at(i)) for i in range(5)]
    await enqueue(storage, *jobs)
    results = await asyncio.gather(*(claim(storage, f"w{i}", at(100)) for i in range(8)))
    claimed = [job.id for job in results if job is not None]
    assert sorted(claimed) == sorted(job.id for job in jobs)
