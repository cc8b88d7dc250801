"""The durable interaction store: every tenant's listener interactions, listener taste
profiles and the bookkeeping of the collaborative models, in one SQLite database.

Layout
------
One file (``listener_store_path``, by default ``.musicaas/recommender/interactions.sqlite3``
next to the recommender's Qdrant shard), in WAL mode with ``synchronous=FULL``: a write is
on disk when its call returns, so a consumer acks only what survives a crash. Every row
carries its tenant and every read names one.

==============  ==========================================================================
table           rows
==============  ==========================================================================
interactions    one per (tenant, interaction id): listener id, track id, event, played_s,
                at (microseconds, UTC). ``INSERT OR IGNORE`` on that key: a replayed batch
                adds nothing.
profiles        one per (tenant, listener): the content taste profile (float32 blob of the
                embedding length, or NULL when no engaged track is indexed).
models          one per tenant: the last model version number handed out (versions are
                ``v<n>``, monotonic across restarts) and whether interactions arrived since
                the last training snapshot (``stale``).
==============  ==========================================================================

Threads
-------
Every call runs on one dedicated thread that owns the only connection (SQLite's
one-writer rule holds by construction, and the event loop never waits on the disk); the
coroutines here only hand work to it.

Listener ids are stored as given (they are the partner's opaque strings and the key the
partner asks with); logs name them by :func:`~musicaas_recommender.listeners.signals.listener_ref`.

Errors: :class:`~musicaas.runtime.errors.Unavailable` when the database cannot be read or
written (disk full, I/O error, locked by another process), so a consumer naks and retries;
:class:`~musicaas.runtime.errors.FailedPrecondition` from :meth:`InteractionStore.open` when
the file cannot be opened at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from musicaas.runtime.errors import FailedPrecondition, Unavailable
from musicaas.tenancy import check_tenant
from musicaas_recommender.listeners.signals import DISLIKE, WEIGHT_SQL, Row

__all__ = ["DEFAULT_PATH", "InteractionStore", "TrainingSnapshot"]

#: Default database file, relative to the working directory (beside ``.musicaas/qdrant``).
DEFAULT_PATH = ".musicaas/recommender/interactions.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    tenant TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    track_id TEXT NOT NULL,
    event INTEGER NOT NULL,
    played_s REAL NOT NULL,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant, interaction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS interactions_by_listener ON interactions (tenant, listener_id, at_us);
CREATE TABLE IF NOT EXISTS profiles (
    tenant TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    vector BLOB,
    PRIMARY KEY (tenant, listener_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    tenant TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL DEFAULT 0,
    stale INTEGER NOT NULL DEFAULT 1
);
"""


@dataclass(frozen=True)
class TrainingSnapshot:
    """A tenant's interactions as one training run reads them.

    Attributes
    ----------
    version : int >= 1
        The version number handed to this run (``"v<version>"``).
    listener_ids, track_ids : list of str [length n]
        Per interaction.
    events : np.ndarray [shape=(n,)], int32
        ``common_pb2.InteractionType`` values.
    played_s : np.ndarray [shape=(n,)], float64, seconds
    """

    version: int
    listener_ids: list[str]
    track_ids: list[str]
    events: np.ndarray
    played_s: np.ndarray


class InteractionStore:
    """Interactions, taste profiles and model bookkeeping in SQLite (module docstring).

    Use as an async context manager, or call :meth:`open` and :meth:`close`.

    Parameters
    ----------
    path : str or os.PathLike
        The database file (its folder is created); ``":memory:"`` for a private in-memory one.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interaction-store")
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def __aenter__(self) -> "InteractionStore":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (create) the database; idempotent.

        Raises
        ------
        FailedPrecondition
            The file cannot be created or opened, or is not a database.
        """

        def connect() -> None:
            if self._db is not None:
                return
            try:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise FailedPrecondition(f"cannot open the interaction store {self.path}: {exc}") from exc
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        """Close the database after the calls in flight; idempotent."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed:
            raise Unavailable("the interaction store is closed")
        if self._db is None:
            await self.open()

        def call() -> Any:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                if self._db is not None and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise Unavailable(f"interaction store: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- interactions ------------------------------------------------------------------------

    async def record(self, tenant: str, rows: Sequence[Row]) -> int:
        """Store ``tenant``'s rows, each interaction id once, and mark the tenant's model
        stale when any is new; one transaction.

        Returns
        -------
        int
            Rows that were new (0 for a replayed batch).
        """
        check_tenant(tenant)
        params = [(tenant, r.interaction_id, r.listener_id, r.track_id, r.event, r.played_s, r.at_us) for r in rows]

        def write(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO interactions VALUES (?, ?, ?, ?, ?, ?, ?)", params)
            new = db.total_changes - before
            if new:
                db.execute("INSERT INTO models (tenant, stale) VALUES (?, 1) "
                           "ON CONFLICT (tenant) DO UPDATE SET stale = 1", (tenant,))
            db.execute("COMMIT")
            return new

        return await self._run(write)

    async def interaction_count(self, tenant: str, listener_id: str) -> int:
        """Interactions ``tenant``'s listener has recorded (0 for an unknown listener)."""
        check_tenant(tenant)
        return await self._run(lambda db: db.execute(
            "SELECT COUNT(*) FROM interactions WHERE tenant = ? AND listener_id = ?", (tenant, listener_id)
        ).fetchone()[0])

    async def history(self, tenant: str, listener_id: str, *, limit: int) -> list[tuple[str, int, float]]:
        """The listener's ``limit`` latest interactions, latest first.

        Returns
        -------
        list of (track_id, event, played_s)
        """
        check_tenant(tenant)
        return await self._run(lambda db: db.execute(
            "SELECT track_id, event, played_s FROM interactions WHERE tenant = ? AND listener_id = ? "
            "ORDER BY at_us DESC, interaction_id DESC LIMIT ?", (tenant, listener_id, int(limit))
        ).fetchall())

    async def engaged(self, tenant: str, listener_id: str) -> tuple[int, set[str], set[str]]:
        """What the listener has done.

        Returns
        -------
        (int, set of str, set of str)
            Interaction count, every track it interacted with, and the tracks it disliked.
        """
        check_tenant(tenant)

        def read(db: sqlite3.Connection) -> tuple[int, set[str], set[str]]:
            n, played, disliked = 0, set(), set()
            for track_id, event in db.execute(
                "SELECT track_id, event FROM interactions WHERE tenant = ? AND listener_id = ?", (tenant, listener_id)
            ):
                n += 1
                played.add(track_id)
                if event == DISLIKE:
                    disliked.add(track_id)
            return n, played, disliked

        return await self._run(read)

    async def popular(self, tenant: str, *, limit: int) -> list[tuple[str, int]]:
        """``tenant``'s most popular tracks: by the number of distinct listeners with a
        positive interaction (weight > 0), most first (ties by track id).

        Returns
        -------
        list of (track_id, listeners)
        """
        check_tenant(tenant)
        return await self._run(lambda db: db.execute(
            f"SELECT track_id, COUNT(DISTINCT listener_id) AS n FROM interactions "
            f"WHERE tenant = ? AND {WEIGHT_SQL} > 0 GROUP BY track_id ORDER BY n DESC, track_id LIMIT ?",
            (tenant, int(limit)),
        ).fetchall())

    # -- taste profiles -----------------------------------------------------------------------

    async def save_profile(self, tenant: str, listener_id: str, vector: np.ndarray | None) -> None:
        """Store (replace) the listener's taste profile; None: it has none."""
        check_tenant(tenant)
        blob = None if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO profiles VALUES (?, ?, ?) ON CONFLICT (tenant, listener_id) "
                       "DO UPDATE SET vector = excluded.vector", (tenant, listener_id, blob))

        await self._run(write)

    async def profile(self, tenant: str, listener_id: str) -> np.ndarray | None:
        """The listener's taste profile (np.ndarray [shape=(dim,)], float32), or None."""
        check_tenant(tenant)
        row = await self._run(lambda db: db.execute(
            "SELECT vector FROM profiles WHERE tenant = ? AND listener_id = ?", (tenant, listener_id)
        ).fetchone())
        if row is None or row[0] is None:
            return None
        return np.frombuffer(row[0], dtype=np.float32).copy()

    # -- model bookkeeping --------------------------------------------------------------------

    async def tenants(self) -> dict[str, bool]:
        """Every tenant with interactions, and whether its model is stale."""
        rows = await self._run(lambda db: db.execute("SELECT tenant, stale FROM models").fetchall())
        return {t: bool(s) for t, s in rows}

    async def mark_stale(self, tenant: str) -> None:
        """Mark ``tenant``'s model stale (a failed training run gives its snapshot back)."""
        check_tenant(tenant)
        await self._run(lambda db: db.execute(
            "INSERT INTO models (tenant, stale) VALUES (?, 1) ON CONFLICT (tenant) DO UPDATE SET stale = 1",
            (tenant,)))

    async def snapshot(self, tenant: str) -> TrainingSnapshot:
        """Read every interaction of ``tenant``, hand out the next version number and clear
        the stale mark, in one transaction: interactions recorded after it mark the tenant
        stale again, so the next scheduled run picks them up."""
        check_tenant(tenant)

        def read(db: sqlite3.Connection) -> TrainingSnapshot:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT listener_id, track_id, event, played_s FROM interactions WHERE tenant = ?", (tenant,)
            ).fetchall()
            db.execute("INSERT INTO models (tenant, last_version, stale) VALUES (?, 1, 0) ON CONFLICT (tenant) "
                       "DO UPDATE SET last_version = last_version + 1, stale = 0", (tenant,))
            version = db.execute("SELECT last_version FROM models WHERE tenant = ?", (tenant,)).fetchone()[0]
            db.execute("COMMIT")
            return TrainingSnapshot(
                version=int(version),
                listener_ids=[r[0] for r in rows],
                track_ids=[r[1] for r in rows],
                events=np.fromiter((r[2] for r in rows), dtype=np.int32, count=len(rows)),
                played_s=np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows)),
            )

        return await self._run(read)
