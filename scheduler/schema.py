"""JSON Schemas of the configuration files, exported to docs/ so editors can validate YAML.

Protocol, room and order files (``run --order-file``) are the scheduler's own models. File
kinds owned by other packages (the simulator's ``patient:`` scenarios) come through the
``fluoroctl.files`` entry-point group that ``fluoroctl validate`` already uses: the
registered loader's return annotation names the model it validates with, so the scheduler
never imports the simulator.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from drivers.config import find_file_loader

from .orders import Order
from .protocol import Protocol
from .room import Room

#: File kinds registered by other packages that get a published schema: root key -> title.
REGISTERED_KINDS = {"patient": "fluoroctl simulated patient file"}


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


def registered_model(root_key: str) -> type[BaseModel] | None:
    """The pydantic model of a file kind registered in ``fluoroctl.files``, if any.

    A registered loader is ``load(path) -> Model``; its return annotation is the model. None
    when no package registers ``root_key``; TypeError when the loader does not say which
    model it returns (a schema that silently went missing would let editors accept anything).
    """
    loader = find_file_loader(root_key)
    if loader is None:
        return None
    returned = inspect.signature(loader, eval_str=True).return_annotation
    if not (isinstance(returned, type) and issubclass(returned, BaseModel)):
        raise TypeError(
            f"the fluoroctl.files loader for {root_key!r} ({loader!r}) must be annotated to "
            f"return a pydantic model, not {returned!r}"
        )
    return returned


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for protocol and room files and every registered file kind."""
    out = {
        "protocol-schema.json": file_schema("protocol", Protocol, "fluoroctl protocol file"),
        "room-schema.json": file_schema("room", Room, "fluoroctl room file"),
        "order-schema.json": file_schema("order", Order, "fluoroctl exam order file"),
    }
    for root_key, title in REGISTERED_KINDS.items():
        model = registered_model(root_key)
        if model is not None:
            out[f"{root_key}-schema.json"] = file_schema(root_key, model, title)
    return out


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
