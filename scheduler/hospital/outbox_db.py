"""What the outbox file holds: its tables, the states of a delivery, and the rows it gives
back (scheduler/hospital/outbox.py is the queue's behaviour; decision 0013)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .config import Peer

FILE_NAME = "dicom-outbox.sqlite"
SCHEMA_VERSION = 1

QUEUED, SENT, COMMITTED = "queued", "sent", "committed"
STORE, MPPS = "store", "mpps"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('store', 'mpps')),
    ae TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, timeout_s REAL NOT NULL,
    commitment INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT
);
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sop_instance_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL, file TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    written_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    sop_instance_uid TEXT NOT NULL REFERENCES objects (sop_instance_uid),
    destination TEXT NOT NULL REFERENCES destinations (name),
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'committed')),
    attempts INTEGER NOT NULL DEFAULT 0, sends INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0, last_error TEXT,
    sent_at REAL, committed_at REAL, transaction_uid TEXT, commit_asked_at REAL,
    PRIMARY KEY (sop_instance_uid, destination)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    destination TEXT NOT NULL REFERENCES destinations (name),
    kind TEXT NOT NULL CHECK (kind IN ('n-create', 'n-set')),
    sop_class_uid TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,
    dataset TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent')),
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT,
    queued_at REAL NOT NULL, sent_at REAL, note TEXT
);
"""


def destination_name(peer: Peer) -> str:
    """How a peer is named in the outbox and in ``dicom status``: ``AE@host:port``."""
    return f"{peer.ae}@{peer.host}:{peer.port}"


@dataclass(frozen=True, slots=True)
class Target:
    """A destination as the outbox recorded it (the room file may change later)."""

    name: str
    role: str
    ae: str
    host: str
    port: int
    timeout_s: float
    commitment: bool
    failures: int
    next_try: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Pending:
    """An object due for a destination."""

    sop_instance_uid: str
    sop_class_uid: str
    file: str
    transfer_syntax: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    destination: str
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    dataset: dict[str, object]
    attempts: int
    next_try: float


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One object at one destination, as ``dicom status`` and ``summary.json`` show it."""

    file: str
    sop_instance_uid: str
    destination: str
    state: str
    attempts: int
    sends: int
    last_error: str | None
    next_try: float | None
    sent_at: float | None
    committed_at: float | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    destination: str
    kind: str
    sop_instance_uid: str
    state: str
    attempts: int
    last_error: str | None
    next_try: float | None
    note: str | None


def delivery_rows(db: sqlite3.Connection) -> list[DeliveryRow]:
    """Every object at every destination, in the order they were written."""
    found = db.execute(
        "SELECT o.file, d.*, t.commitment, t.last_error AS down_error,"
        " t.next_try AS down_until FROM deliveries d"
        " JOIN objects o USING (sop_instance_uid) JOIN destinations t ON t.name = d.destination"
        " ORDER BY o.seq, t.rowid"
    ).fetchall()
    return [
        DeliveryRow(
            file=r["file"],
            sop_instance_uid=r["sop_instance_uid"],
            destination=r["destination"],
            state=r["state"],
            attempts=r["attempts"],
            sends=r["sends"],
            last_error=r["last_error"] or (r["down_error"] if r["state"] == QUEUED else None),
            next_try=max(r["next_try"], r["down_until"]) if r["state"] == QUEUED else None,
            sent_at=r["sent_at"],
            committed_at=r["committed_at"] if r["commitment"] else None,
        )
        for r in found
    ]


def message_rows(db: sqlite3.Connection) -> list[MessageRow]:
    """The MPPS messages, in the order they were queued."""
    found = db.execute(
        "SELECT m.*, t.last_error AS down_error, t.next_try AS down_until FROM messages m"
        " JOIN destinations t ON t.name = m.destination ORDER BY m.id"
    ).fetchall()
    return [
        MessageRow(
            id=r["id"],
            destination=r["destination"],
            kind=r["kind"],
            sop_instance_uid=r["sop_instance_uid"],
            state=r["state"],
            attempts=r["attempts"],
            last_error=r["last_error"] or (r["down_error"] if r["state"] == QUEUED else None),
            next_try=max(r["next_try"], r["down_until"]) if r["state"] == QUEUED else None,
            note=r["note"],
        )
        for r in found
    ]
