"""Claims, leases and guarded loading-status transitions.

Every transition is a compare-and-set (`UPDATE ... WHERE loading_status = LOADING [AND attempt = :a]`); when no
row matches, the reason is looked up and raised as a typed error, never ignored.
"""

from __future__ import annotations

import json

from sqlalchemy import ColumnElement, Text, case, cast, func, literal, or_, select, update

from model_manager.core import metrics
from model_manager.core.errors import FailedPrecondition, NotFound
from model_manager.store.database import Conn
from model_manager.store.records import Kind, LoadingStatus, ModelColumns, ModelRecord, to_record

# The lease holder recorded for a claim without a holder name: an llmariner loader from before leases, which never
# sends the attempt back. Its updates are accepted without one; every other claim's updates must name it.
LEGACY_HOLDER = "unknown"


async def claim(
    conn: Conn, kind: Kind, tenant_id: str, holder: str, lease_seconds: float, now: float
) -> ModelRecord | None:
    """Take the tenant's oldest REQUESTED model in one statement; None when there is none.

    On PostgreSQL the inner SELECT skips rows other claimers have locked, so concurrent claimers never wait on
    or receive the same row; on SQLite the write lock taken at BEGIN serializes claimers and the status guard
    in the outer WHERE keeps the claim exact.
    """
    t = kind.table
    holder = holder or LEGACY_HOLDER
    oldest = (
        select(t.c.id)
        .where(
            t.c.tenant_id == tenant_id,
            t.c.loading_status == LoadingStatus.REQUESTED,
            or_(t.c.claimable_at.is_(None), t.c.claimable_at <= now),
        )
        .order_by(t.c.created_at, t.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    q = (
        update(t)
        .where(t.c.id == oldest, t.c.loading_status == LoadingStatus.REQUESTED)
        .values(
            loading_status=LoadingStatus.LOADING,
            lease_holder=holder,
            lease_expires_at=now + lease_seconds,
            attempt=t.c.attempt + 1,
            claimable_at=None,
            loading_status_message="",
            loading_failure_reason="",
            updated_at=int(now),
        )
        .returning(*t.c)
    )
    row = (await conn.execute(q)).first()
    return to_record(kind, row) if row else None


def _text(value: str) -> ColumnElement[str]:
    return cast(literal(value, Text), Text)  # typed, so that asyncpg knows the parameter is text


def logged_failure(kind: Kind, reason: str, now: float) -> ColumnElement[str]:
    """The `attempt_log` value with this failure appended, for the row's own attempt, computed by the database in
    the same UPDATE (no read-modify-write to race with)."""
    t = kind.table
    tail = f',"reason":{json.dumps(reason)},"at":{int(now)}}}'
    entry = _text('{"attempt":') + cast(t.c.attempt, Text) + _text(tail)
    log = t.c.attempt_log
    appended = func.substr(log, 1, func.length(log) - 1) + _text(",") + entry + _text("]")
    return case((log == "[]", _text("[") + entry + _text("]")), else_=appended)


async def expire_leases(conn: Conn, now: float, max_attempts: int) -> int:
    """Give back models whose loader stopped renewing its lease: REQUESTED again, or FAILED when out of attempts.

    Rows without a lease (fine-tuned models registered as LOADING by a training job) are never touched.
    """
    total = 0
    stopped = "the loader stopped reporting progress (lease expired)"
    reason = f"loading did not finish after {max_attempts} attempts: {stopped}"
    for kind in Kind:
        t = kind.table
        exhausted = t.c.attempt - t.c.attempt_floor >= max_attempts
        q = (
            update(t)
            .where(
                t.c.loading_status == LoadingStatus.LOADING,
                t.c.lease_expires_at.is_not(None),
                t.c.lease_expires_at < now,
            )
            .values(
                # int(): inside CASE there is no column to take a type from, and SQLAlchemy would bind an enum as text.
                loading_status=case((exhausted, int(LoadingStatus.FAILED)), else_=int(LoadingStatus.REQUESTED)),
                loading_failure_reason=case((exhausted, reason), else_=""),
                loading_status_message=case(
                    (exhausted, ""), else_="the previous loader stopped reporting progress; waiting for a loader"
                ),
                lease_holder=None,
                lease_expires_at=None,
                updated_at=int(now),
                attempt_log=logged_failure(kind, stopped, now),
            )
        )
        total += (await conn.execute(q)).rowcount or 0
    return total


def _key(kind: Kind, tenant_id: str, model_id: str, project_id: str | None) -> ColumnElement[bool]:
    t = kind.table
    cond = (t.c.tenant_id == tenant_id) & (t.c.model_id == model_id)
    if project_id is not None and kind is Kind.BASE:
        cond = cond & (t.c.project_id == project_id)
    return cond


async def find_loading_target(
    conn: Conn, kind: Kind, tenant_id: str, model_id: str, project_id: str | None
) -> ModelRecord:
    row = (await conn.execute(select(kind.table).where(_key(kind, tenant_id, model_id, project_id)))).first()
    if row is None:
        raise NotFound(f'model "{model_id}" not found')
    return to_record(kind, row)


async def lock_loading(
    conn: Conn, kind: Kind, tenant_id: str, model_id: str, project_id: str | None, attempt: int
) -> ModelRecord:
    """The LOADING model held by `attempt`, locked until the transaction ends (a concurrent delete waits for it);
    NotFound or FailedPrecondition when the claim no longer holds it."""
    q = select(kind.table).where(_key(kind, tenant_id, model_id, project_id)).with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f'model "{model_id}" not found: it was deleted while it loaded')
    rec = to_record(kind, row)
    check_loading(rec, attempt)
    return rec


def is_fenced(rec: ModelRecord) -> bool:
    """Claimed under a lease by a loader that sends its attempt back: updates without that attempt are refused."""
    return rec.lease_holder is not None and rec.lease_holder != LEGACY_HOLDER


def check_loading(rec: ModelRecord, attempt: int) -> None:
    """Raise why `rec` cannot take a loading update from the holder of `attempt` (0: not sent)."""
    if rec.loading_status != LoadingStatus.LOADING:
        raise FailedPrecondition(f'model "{rec.model_id}" is not loading (status {rec.loading_status.name})')
    if not attempt and is_fenced(rec):
        raise FailedPrecondition(
            f'model "{rec.model_id}" was claimed under a lease (attempt {rec.attempt}); an update must send the '
            "attempt its claim returned"
        )
    if attempt and attempt != rec.attempt:
        metrics.LEASE_EVENTS.labels("taken_over").inc()
        raise FailedPrecondition(
            f'model "{rec.model_id}": attempt {attempt} is stale, the model was claimed again (attempt {rec.attempt})'
        )


async def transition(
    conn: Conn,
    kind: Kind,
    tenant_id: str,
    model_id: str,
    project_id: str | None,
    attempt: int,
    values: ModelColumns,
) -> ModelRecord:
    """Apply `values` to a LOADING model held by `attempt`; raise NotFound/FailedPrecondition otherwise."""
    t = kind.table
    cond = _key(kind, tenant_id, model_id, project_id) & (t.c.loading_status == LoadingStatus.LOADING)
    if attempt:
        cond = cond & (t.c.attempt == attempt)
    else:
        cond = cond & (t.c.lease_holder.is_(None) | (t.c.lease_holder == LEGACY_HOLDER))
    row = (await conn.execute(update(t).where(cond).values(**values).returning(*t.c))).first()
    if row is not None:
        return to_record(kind, row)
    rec = await find_loading_target(conn, kind, tenant_id, model_id, project_id)
    check_loading(rec, attempt)
    raise FailedPrecondition(f'model "{model_id}" changed while updating; retry')  # lost a race; rare


async def retry_failed(conn: Conn, rec: ModelRecord, now: float) -> ModelRecord:
    """Put the FAILED model `rec` back to REQUESTED with a fresh set of attempts: a compare-and-set, so of two
    retries (or a retry and a delete) that race, one wins and the other is told why."""
    t = rec.kind.table
    q = (
        update(t)
        .where(t.c.id == rec.id, t.c.loading_status == LoadingStatus.FAILED)
        .values(
            loading_status=LoadingStatus.REQUESTED,
            loading_failure_reason="",
            loading_status_message="retry requested; waiting for a loader",
            # The claim counter goes on (it fences loaders of earlier attempts); the attempts used start over.
            attempt_floor=t.c.attempt,
            claimable_at=None,
            progress_bytes_done=0,
            progress_bytes_total=0,
            progress_files_done=0,
            progress_files_total=0,
            updated_at=int(now),
        )
        .returning(*t.c)
    )
    row = (await conn.execute(q)).first()
    if row is not None:
        return to_record(rec.kind, row)
    status = (await conn.execute(select(t.c.loading_status).where(t.c.id == rec.id))).scalar()
    if status is None:
        raise NotFound(f'model "{rec.model_id}" not found')
    raise FailedPrecondition(
        f'model "{rec.model_id}" is {LoadingStatus(status).name.lower()}; only a failed model can be retried'
    )
