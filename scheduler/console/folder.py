"""A read-only console of an exam folder: its ``events.jsonl`` read as it grows."""

from __future__ import annotations

import json
from pathlib import Path

from .hub import ConsoleHub


class FolderTail:
    """Publishes each complete new line of ``DIR/events.jsonl`` to ``hub``."""

    def __init__(self, exam_dir: Path, hub: ConsoleHub) -> None:
        self.path = exam_dir / "events.jsonl"
        self.hub = hub
        self._offset = 0
        self._partial = b""

    def poll(self) -> int:
        """Read what was appended since the last poll; returns how many lines were new."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        count = 0
        for raw in lines:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a torn line (the writer crashed mid-line): the journal says so
            if isinstance(line, dict):
                self.hub.publish(line)
                count += 1
        return count
