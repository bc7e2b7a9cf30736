"""Task profiles: the stored threshold ``tau`` per task type and its counters, updated atomically."""

import anyio
import pytest

from pipo_agent.memory import MemoryStore, NotFoundError, StoreMisuseError

pytestmark = pytest.mark.anyio


async def test_upsert_sets_tau_and_keeps_counters(store: MemoryStore) -> None:
    assert await store.get_task_profile("arithmetic") is None
    created = await store.upsert_task_profile("arithmetic", tau=0.6)
    assert (created.tau, created.drafts_proposed, created.successes) == (0.6, 0, 0)
    await store.add_task_counts("arithmetic", drafts_proposed=10, drafts_committed=7, successes=1)
    updated = await store.upsert_task_profile("arithmetic", tau=0.55)
    assert updated.tau == 0.55
    assert (updated.drafts_proposed, updated.drafts_committed, updated.successes, updated.failures) == (
        10,
        7,
        1,
        0,
    )
    assert updated.updated_at >= created.updated_at
    assert await store.get_task_profile("arithmetic") == updated
    assert await store.get_task_profile("strings") is None


async def test_concurrent_counter_updates_lose_nothing(store: MemoryStore) -> None:
    await store.upsert_task_profile("strings", tau=0.5)

    async def worker() -> None:
        for _ in range(10):
            await store.add_task_counts("strings", drafts_proposed=3, drafts_committed=2, failures=1)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
    profile = await store.get_task_profile("strings")
    assert profile is not None
    counts = (profile.drafts_proposed, profile.drafts_committed, profile.successes, profile.failures)
    assert counts == (150, 100, 0, 50)


async def test_profile_arguments_are_checked(store: MemoryStore) -> None:
    with pytest.raises(NotFoundError, match="upsert_task_profile"):
        await store.add_task_counts("never-created", successes=1)
    with pytest.raises(StoreMisuseError, match="tau"):
        await store.upsert_task_profile("t", tau=float("nan"))
    with pytest.raises(StoreMisuseError, match="tau"):
        await store.upsert_task_profile("t", tau=True)
    with pytest.raises(StoreMisuseError, match="task_type"):
        await store.upsert_task_profile("", tau=0.5)
    await store.upsert_task_profile("t", tau=1)
    with pytest.raises(StoreMisuseError, match="successes"):
        await store.add_task_counts("t", successes=-1)
    with pytest.raises(StoreMisuseError, match="failures"):
        await store.add_task_counts("t", failures=1.5)  # type: ignore[arg-type]
