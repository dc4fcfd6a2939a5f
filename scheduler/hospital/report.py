"""The outbox as ``summary.json``'s ``dicom`` section and ``fluoroctl dicom status`` read it.

Per object: its file and SOP Instance UID (``written``: it is in the exam folder), and per
destination its state (``queued``, ``sent``, ``committed``), when it was sent and committed,
attempts, last error and next try. Times are wall-clock ISO 8601 with the offset.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .outbox import Outbox
from .outbox_db import FILE_NAME


def iso(epoch: float | None) -> str | None:
    if epoch is None or epoch <= 0:
        return None
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def dicom_section(outbox: Outbox) -> dict[str, Any]:
    """What was delivered where (the fields are described in docs/results.md)."""
    objects: dict[str, dict[str, Any]] = {}
    for row in outbox.rows():
        entry = objects.setdefault(
            row.sop_instance_uid,
            {
                "file": row.file,
                "sop_instance_uid": row.sop_instance_uid,
                "written": True,
                "destinations": {},
            },
        )
        entry["destinations"][row.destination] = {
            "state": row.state,
            "sent": iso(row.sent_at),
            "committed": iso(row.committed_at),
            "attempts": row.attempts,
            "last_error": row.last_error,
            "next_try": iso(row.next_try),
        }
    return {
        "outbox": FILE_NAME,
        "destinations": [
            {
                "name": t.name,
                "role": t.role,
                "commitment": t.commitment,
                "last_error": t.last_error,
            }
            for t in outbox.targets()
        ],
        "objects": list(objects.values()),
        "mpps": [
            {
                "kind": m.kind,
                "destination": m.destination,
                "sop_instance_uid": m.sop_instance_uid,
                "state": m.state,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "next_try": iso(m.next_try),
            }
            for m in outbox.message_rows()
        ],
        "undelivered": outbox.undelivered(),
    }
