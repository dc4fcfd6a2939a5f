"""The exam's DICOM outbox: a crash-safe queue in the exam folder (decision 0013).

``dicom-outbox.sqlite`` holds one row per (object, destination) and the MPPS messages.
SQLite in WAL mode with ``synchronous=FULL``: a transaction that returned is on disk (the
WAL is fsynced at every commit), and a process killed mid-transaction leaves the previous
state. Every change is one short ``BEGIN IMMEDIATE`` transaction, so the exam's process
(enqueuing), its background sender and a ``fluoroctl dicom flush`` can share the file.

States of a delivery: ``queued`` → ``sent`` (the destination answered the C-STORE with
success) → ``committed`` (its Storage Commitment report named the object). A failure leaves
the row ``queued`` with ``attempts``, ``last_error`` and the time of the next try. Nothing
is ever dropped: rows leave ``queued`` only by being delivered. An N-EVENT-REPORT that
names an object as failed sends it back to ``queued``.

MPPS messages (N-CREATE, N-SET) are kept in the order they were queued and are sent in that
order per destination: a message waits until every earlier one is accepted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .config import Destination, Peer
from .objects import DicomObject
from .outbox_db import (
    _SCHEMA,
    FILE_NAME,
    MPPS,
    QUEUED,
    SCHEMA_VERSION,
    STORE,
    DeliveryRow,
    Message,
    MessageRow,
    Pending,
    Target,
    delivery_rows,
    destination_name,
    message_rows,
)


class OutboxError(Exception):
    """The outbox file cannot be opened or is not one (one line, names the file)."""


class Outbox:
    """One exam folder's queue: one connection, used by one thread at a time (open one per
    concurrent thread; SQLite serialises the writers)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise OutboxError(f"{path}: no DICOM outbox")
        try:
            # Not shared between threads at once: the exam's loop thread enqueues, then its
            # end runs in a worker thread while the loop waits (check_same_thread off for that).
            self._db = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)  # IF NOT EXISTS: a second opener changes nothing
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{path}: cannot open the DICOM outbox: {exc}") from None

    @classmethod
    def in_folder(cls, folder: Path, *, create: bool = True) -> Outbox:
        return cls(folder / FILE_NAME, create=create)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taken for writing at once (no upgrade deadlocks between
        processes); committed (and fsynced) on leaving, rolled back on an exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- configuration ------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, **values: str) -> None:
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def add_destinations(self, stores: Sequence[Destination], mpps: Peer | None = None) -> None:
        """Record where objects (and MPPS messages) go; a known name keeps its state, its
        address fields are refreshed. Objects already queued get rows for new destinations."""
        peers: list[tuple[str, Peer, bool]] = [(STORE, d, d.commitment) for d in stores]
        if mpps is not None:
            peers.append((MPPS, mpps, False))
        with self._write() as db:
            for role, peer, commitment in peers:
                db.execute(
                    "INSERT INTO destinations (name, role, ae, host, port, timeout_s, commitment)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " timeout_s = excluded.timeout_s, commitment = excluded.commitment",
                    (
                        destination_name(peer),
                        role,
                        peer.ae,
                        peer.host,
                        peer.port,
                        peer.timeout_s,
                        int(commitment),
                    ),
                )
            db.execute(
                "INSERT OR IGNORE INTO deliveries (sop_instance_uid, destination, state)"
                " SELECT o.sop_instance_uid, d.name, 'queued' FROM objects o, destinations d"
                " WHERE d.role = 'store'"
            )

    def targets(self, role: str | None = None) -> list[Target]:
        rows = self._db.execute(
            "SELECT * FROM destinations WHERE ? IS NULL OR role = ? ORDER BY rowid", (role, role)
        ).fetchall()
        return [
            Target(
                name=r["name"],
                role=r["role"],
                ae=r["ae"],
                host=r["host"],
                port=r["port"],
                timeout_s=r["timeout_s"],
                commitment=bool(r["commitment"]),
                failures=r["failures"],
                next_try=r["next_try"],
                last_error=r["last_error"],
            )
            for r in rows
        ]

    # -- enqueuing ----------------------------------------------------------------------------
    def enqueue(self, obj: DicomObject, now: float | None = None) -> bool:
        """Queue ``obj`` for every store destination; False when it already was (idempotent
        by SOP Instance UID). Durable when this returns."""
        stamp = time.time() if now is None else now
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO objects"
                " (sop_instance_uid, sop_class_uid, file, transfer_syntax, written_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (obj.sop_instance_uid, obj.sop_class_uid, obj.file, obj.transfer_syntax, stamp),
            )
            db.execute(
                "INSERT OR IGNORE INTO deliveries (sop_instance_uid, destination, state)"
                " SELECT ?, name, 'queued' FROM destinations WHERE role = 'store'",
                (obj.sop_instance_uid,),
            )
            return cursor.rowcount > 0

    def known_files(self) -> set[str]:
        return set(self.files())

    def files(self) -> list[str]:
        """The queued objects' file names, in queue order."""
        return [r[0] for r in self._db.execute("SELECT file FROM objects ORDER BY seq")]

    def enqueue_message(
        self,
        key: str,
        destination: str,
        kind: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        dataset: dict[str, object],
        now: float | None = None,
    ) -> bool:
        """Queue an MPPS message once per ``key``; False when ``key`` was queued before."""
        stamp = time.time() if now is None else now
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO messages (key, destination, kind, sop_class_uid,"
                " sop_instance_uid, dataset, state, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    destination,
                    kind,
                    sop_class_uid,
                    sop_instance_uid,
                    json.dumps(dataset),
                    QUEUED,
                    stamp,
                ),
            )
            return cursor.rowcount > 0

    def has_message(self, key: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM messages WHERE key = ?", (key,)).fetchone() is not None
        )

    # -- what is due --------------------------------------------------------------------------
    def due_objects(self, destination: str, now: float, limit: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT o.sop_instance_uid, o.sop_class_uid, o.file, o.transfer_syntax, d.attempts"
            " FROM deliveries d JOIN objects o USING (sop_instance_uid)"
            " WHERE d.destination = ? AND d.state = 'queued' AND d.next_try <= ?"
            " ORDER BY o.seq LIMIT ?",
            (destination, now, limit),
        ).fetchall()
        return [Pending(*tuple(r)) for r in rows]

    def to_commit(self, destination: str, now: float, timeout_s: float) -> list[tuple[str, str]]:
        """(class, instance) UIDs sent but not committed whose request is due (never asked,
        or unanswered for ``timeout_s``)."""
        rows = self._db.execute(
            "SELECT o.sop_class_uid, o.sop_instance_uid FROM deliveries d"
            " JOIN objects o USING (sop_instance_uid) JOIN destinations t ON t.name = d.destination"
            " WHERE d.destination = ? AND d.state = 'sent' AND t.commitment"
            " AND (d.commit_asked_at IS NULL OR d.commit_asked_at <= ?) ORDER BY o.seq",
            (destination, now - timeout_s),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def due_message(self, destination: str, now: float) -> Message | None:
        """The destination's oldest unsent message, if its time has come (later ones wait)."""
        r = self._db.execute(
            "SELECT * FROM messages WHERE destination = ? AND state = 'queued' ORDER BY id LIMIT 1",
            (destination,),
        ).fetchone()
        if r is None or r["next_try"] > now:
            return None
        return Message(
            id=r["id"],
            destination=r["destination"],
            kind=r["kind"],
            sop_class_uid=r["sop_class_uid"],
            sop_instance_uid=r["sop_instance_uid"],
            dataset=json.loads(r["dataset"]),
            attempts=r["attempts"],
            next_try=r["next_try"],
        )

    def next_wake(self) -> float | None:
        """The earliest time anything queued may be tried (None: nothing queued)."""
        row = self._db.execute(
            "SELECT MIN(t) FROM ("
            " SELECT MAX(d.next_try, t.next_try) AS t FROM deliveries d"
            "  JOIN destinations t ON t.name = d.destination WHERE d.state = 'queued'"
            " UNION ALL SELECT MAX(m.next_try, t.next_try) FROM messages m"
            "  JOIN destinations t ON t.name = m.destination WHERE m.state = 'queued')"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    # -- outcomes -----------------------------------------------------------------------------
    def mark_sent(self, uid: str, destination: str, now: float) -> None:
        """The destination answered the C-STORE with success."""
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET state = CASE WHEN state = 'queued' THEN 'sent'"
                " ELSE state END, sends = sends + 1, attempts = attempts + 1, sent_at = ?,"
                " last_error = NULL WHERE sop_instance_uid = ? AND destination = ?",
                (now, uid, destination),
            )

    def mark_failed(self, uid: str, destination: str, error: str, next_try: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_try = ?"
                " WHERE sop_instance_uid = ? AND destination = ?",
                (error, next_try, uid, destination),
            )

    def destination_down(self, destination: str, error: str, next_try: float) -> int:
        """The destination could not be reached; returns its consecutive failures. Its rows
        show this error (and its next try) while it is down."""
        with self._write() as db:
            db.execute(
                "UPDATE destinations SET failures = failures + 1, last_error = ?, next_try = ?"
                " WHERE name = ?",
                (error, next_try, destination),
            )
            row = db.execute(
                "SELECT failures FROM destinations WHERE name = ?", (destination,)
            ).fetchone()
        return int(row[0]) if row else 0

    def destination_up(self, destination: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE destinations SET failures = 0, next_try = 0, last_error = NULL"
                " WHERE name = ? AND (failures != 0 OR last_error IS NOT NULL)",
                (destination,),
            )

    def failures(self, destination: str) -> int:
        row = self._db.execute(
            "SELECT failures FROM destinations WHERE name = ?", (destination,)
        ).fetchone()
        return int(row[0]) if row else 0

    def commitment_asked(
        self, destination: str, uids: Sequence[str], transaction_uid: str, now: float
    ) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE deliveries SET transaction_uid = ?, commit_asked_at = ?"
                " WHERE sop_instance_uid = ? AND destination = ? AND state = 'sent'",
                [(transaction_uid, now, uid, destination) for uid in uids],
            )

    def commitment_withdrawn(
        self, destination: str, uids: Sequence[str], transaction_uid: str
    ) -> None:
        """The request under ``transaction_uid`` was not accepted: ask again at the next pass
        (rows a report already settled are left as they are)."""
        with self._write() as db:
            db.executemany(
                "UPDATE deliveries SET transaction_uid = NULL, commit_asked_at = NULL"
                " WHERE sop_instance_uid = ? AND destination = ? AND transaction_uid = ?"
                " AND state = 'sent'",
                [(uid, destination, transaction_uid) for uid in uids],
            )

    def commitment_reported(
        self,
        transaction_uid: str,
        committed: Sequence[str],
        failed: Sequence[tuple[str, str]],
        now: float,
    ) -> int:
        """Apply a Storage Commitment report; returns how many rows it changed.

        Committed objects are done; failed ones (with the reason) go back to ``queued`` to be
        stored again. Only rows asked under ``transaction_uid`` are touched, so a late report
        from an earlier request cannot undo a newer answer.
        """
        changed = 0
        with self._write() as db:
            for uid in committed:
                changed += db.execute(
                    "UPDATE deliveries SET state = 'committed', committed_at = ?,"
                    " last_error = NULL WHERE sop_instance_uid = ? AND transaction_uid = ?"
                    " AND state = 'sent'",
                    (now, uid, transaction_uid),
                ).rowcount
            for uid, reason in failed:
                changed += db.execute(
                    "UPDATE deliveries SET state = 'queued', next_try = 0, last_error = ?,"
                    " transaction_uid = NULL, commit_asked_at = NULL"
                    " WHERE sop_instance_uid = ? AND transaction_uid = ? AND state = 'sent'",
                    (f"storage commitment refused: {reason}", uid, transaction_uid),
                ).rowcount
        return changed

    def message_sent(self, message_id: int, now: float, note: str | None = None) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE messages SET state = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL, note = ? WHERE id = ?",
                (now, note, message_id),
            )

    def message_failed(self, message_id: int, error: str, next_try: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE messages SET attempts = attempts + 1, last_error = ?, next_try = ?"
                " WHERE id = ?",
                (error, next_try, message_id),
            )

    # -- reporting ----------------------------------------------------------------------------
    def rows(self) -> list[DeliveryRow]:
        return delivery_rows(self._db)

    def message_rows(self) -> list[MessageRow]:
        return message_rows(self._db)

    def undelivered(self) -> int:
        """Rows not yet where they are going: queued objects, objects sent to a destination
        that commits but not committed yet, unsent messages. ``sent`` is the end for a
        destination without commitment."""
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries d JOIN destinations t"
            " ON t.name = d.destination WHERE d.state = 'queued'"
            " OR (d.state = 'sent' AND t.commitment))"
            " + (SELECT COUNT(*) FROM messages WHERE state = 'queued')"
        ).fetchone()
        return int(row[0])
