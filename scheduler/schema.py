"""JSON Schemas of the configuration files, exported to docs/ so editors can validate YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .protocol import Protocol
from .room import Room


def file_schema(root_key: str, model: type[BaseModel], title: str) -> dict[str, Any]:
    inner = model.model_json_schema()
    defs = inner.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "required": [root_key],
        "additionalProperties": False,
        "properties": {root_key: inner},
        "$defs": defs,
    }


def schemas() -> dict[str, dict[str, Any]]:
    return {
        "protocol-schema.json": file_schema("protocol", Protocol, "fluoroctl protocol file"),
        "room-schema.json": file_schema("room", Room, "fluoroctl room file"),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
