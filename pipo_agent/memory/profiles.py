"""Task profiles: per-task-type confidence threshold ``tau`` and the counters an adaptive policy reads.

Counters change with one ``UPDATE ... SET n = n + :delta`` so concurrent runs never lose an increment;
``tau`` is set with an upsert (``INSERT ... ON CONFLICT DO UPDATE``, on both dialects).
"""

import math
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pipo_agent.memory.errors import NotFoundError, StoreMisuseError
from pipo_agent.memory.models import TaskProfileRow
from pipo_agent.memory.records import TaskProfile

COUNTERS = ("drafts_proposed", "drafts_committed", "successes", "failures")


def profile_record(row: TaskProfileRow) -> TaskProfile:
    return TaskProfile(
        row.task_type,
        row.tau,
        row.drafts_proposed,
        row.drafts_committed,
        row.successes,
        row.failures,
        row.updated_at,
    )


def check_task_type(task_type: object) -> str:
    if not isinstance(task_type, str) or not 0 < len(task_type) <= 128:
        raise StoreMisuseError(f"task_type must be a string of 1..128 characters, got {task_type!r}")
    return task_type


def check_tau(tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
        raise StoreMisuseError(f"tau must be a finite number, got {tau!r}")
    return float(tau)


def check_deltas(deltas: dict[str, int]) -> None:
    for name, value in deltas.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StoreMisuseError(f"{name} must be an int >= 0, got {value!r}")


async def get_profile(session: AsyncSession, task_type: str) -> TaskProfile | None:
    query = select(TaskProfileRow).where(TaskProfileRow.task_type == task_type)
    # populate_existing: the row may sit in the session from before a Core UPDATE changed it.
    row = await session.scalar(query.execution_options(populate_existing=True))
    return None if row is None else profile_record(row)


async def upsert_profile(session: AsyncSession, task_type: str, tau: float, now: datetime) -> TaskProfile:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(TaskProfileRow).values(
        task_type=task_type, tau=tau, updated_at=now, **dict.fromkeys(COUNTERS, 0)
    )
    statement = statement.on_conflict_do_update(
        index_elements=[TaskProfileRow.task_type], set_={"tau": tau, "updated_at": now}
    )
    await session.execute(statement)
    profile = await get_profile(session, task_type)
    assert profile is not None
    return profile


async def add_counts(
    session: AsyncSession, task_type: str, deltas: dict[str, int], now: datetime
) -> TaskProfile:
    columns = {name: getattr(TaskProfileRow, name) for name in COUNTERS}
    statement = (
        update(TaskProfileRow)
        .where(TaskProfileRow.task_type == task_type)
        .values(updated_at=now, **{name: columns[name] + delta for name, delta in deltas.items()})
        .returning(TaskProfileRow.id)
        .execution_options(synchronize_session=False)
    )
    if await session.scalar(statement) is None:
        raise NotFoundError(f"no task profile {task_type!r}; create it with upsert_task_profile")
    profile = await get_profile(session, task_type)
    assert profile is not None
    return profile
