"""The store from trio (and asyncio) through ThreadedMemoryStore's asyncio loop thread."""

from pathlib import Path

import anyio
import pytest

from pipo_agent.memory import MemoryStore, NotFoundError, ThreadedMemoryStore
from tests.memory.conftest import user


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_threaded_store_works_on_any_backend(tmp_path: Path) -> None:
    async with await ThreadedMemoryStore.open(tmp_path / "m.db") as memory:
        thread = await memory.call(lambda store: store.create_thread(title="from any loop"))

        async def append(i: int) -> None:
            await memory.call(lambda store: store.append_message(thread.id, user(f"m{i}")))

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(append, i)
        history = await memory.call(lambda store: store.load_history(thread.id))
        assert sorted(m["content"] for m in history) == [f"m{i}" for i in range(5)]
        with pytest.raises(NotFoundError):
            await memory.call(lambda store: store.get_thread("missing"))
    with pytest.raises(RuntimeError, match="closed"):
        await memory.call(lambda store: store.list_threads())
    # What it wrote is an ordinary store file.
    async with await ThreadedMemoryStore.open(tmp_path / "m.db") as again:
        titles = [t.title for t in await again.call(MemoryStore.list_threads)]
    assert titles == ["from any loop"]
