"""The JSON Schemas in docs/ describe the models the code validates with, and every shipped
protocol, room and patient file validates against them the way an editor checks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scheduler import schema as schema_module
from scheduler.cli import main
from scheduler.schema import render, schemas

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"protocols": "protocol", "rooms": "room", "patients": "patient", "orders": "order"}
SHIPPED = sorted((ROOT / "configs").glob("*/*.yaml"))


class EditorLoader(yaml.SafeLoader):
    """YAML as editors' schema validation reads it (YAML 1.2 core): ``1971-05-14`` stays a
    string, which the schemas type as ``format: date``, instead of becoming a date object."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def published(kind: str) -> dict[str, Any]:
    return json.loads((ROOT / "docs" / f"{kind}-schema.json").read_text())


def validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(published(kind))


def errors(kind: str, document: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(kind).iter_errors(document)
    ]


def test_exported_schemas_are_current(root):
    for name, schema in schemas().items():
        path = root / "docs" / name
        assert path.exists(), f"{path} missing: run `fluoroctl schema --out docs`"
        assert path.read_text() == render(schema), (
            f"{path} is stale: run `fluoroctl schema --out docs`"
        )


def test_protocol_schema_knows_the_step_types(root):
    schema = json.loads((root / "docs" / "protocol-schema.json").read_text())
    text = json.dumps(schema)
    for step_type in ("capture", "fluoro", "inject", "prompt"):
        assert f'"const": "{step_type}"' in text
    assert schema["required"] == ["protocol"]


def test_there_is_a_published_schema_for_every_kind_of_shipped_file():
    assert {p.parent.name for p in SHIPPED} == set(KINDS)
    assert set(schemas()) == {f"{kind}-schema.json" for kind in KINDS.values()}


@pytest.mark.parametrize("kind", sorted(KINDS.values()))
def test_published_schemas_are_valid_draft_2020_12(kind):
    jsonschema.Draft202012Validator.check_schema(published(kind))
    assert published(kind)["required"] == [kind]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_file_validates_against_its_published_schema(path):
    document = yaml.load(path.read_text(), Loader=EditorLoader)
    assert errors(KINDS[path.parent.name], document) == []


def shipped(kind_dir: str, name: str) -> dict[str, Any]:
    text = (ROOT / "configs" / kind_dir / name).read_text()
    loaded: dict[str, Any] = yaml.load(text, Loader=EditorLoader)
    return loaded


def with_step_at(value: object) -> dict[str, Any]:
    document = shipped("protocols", "ivu-standard.yaml")
    timed = next(s for s in document["protocol"]["steps"] if "at" in s)
    timed["at"] = value
    return document


@pytest.mark.parametrize("value", ["5min", "1h30min", "2min30s", "12s", 300, 12.5])
def test_durations_are_typed_as_the_duration_grammar_or_seconds(value):
    assert errors("protocol", with_step_at(value)) == []


@pytest.mark.parametrize("value", ["5 minutes", "min", "", "-5s", -1, 24 * 3600 + 1, True])
def test_what_is_not_a_duration_is_refused(value):
    assert errors("protocol", with_step_at(value)) != []


def test_the_schemas_refuse_what_the_loaders_refuse():
    protocol = shipped("protocols", "ivu-standard.yaml")
    protocol["protocol"]["steps"][0]["type"] = "xray"
    assert errors("protocol", protocol)
    room = shipped("rooms", "simulator.yaml")
    room["room"]["clock"] = "sundial"
    assert errors("room", room)
    patient = shipped("patients", "normal.yaml")
    patient["patient"]["kidneys"]["gfr_left_ml_min"] = 500
    assert errors("patient", patient)
    patient = shipped("patients", "normal.yaml")
    patient["patient"]["eye_colour"] = "brown"  # unknown keys are refused, as by the loader
    assert errors("patient", patient)
    patient = shipped("patients", "normal.yaml")
    patient["patient"]["sex"] = "X"
    assert errors("patient", patient)


def test_schema_command_writes_the_patient_schema_too(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "order-schema.json",
        "patient-schema.json",
        "protocol-schema.json",
        "room-schema.json",
    ]
    assert sorted(capsys.readouterr().out.split()) == [str(tmp_path / name) for name in written]
    patient = json.loads((tmp_path / "patient-schema.json").read_text())
    assert patient["required"] == ["patient"]
    assert {"id", "name", "kidneys", "access"} <= set(
        patient["properties"]["patient"]["properties"]
    )


def test_a_registered_loader_that_names_no_model_is_refused(monkeypatch):
    def load_untyped(path):  # what a plugin without annotations would register
        return path

    monkeypatch.setattr(schema_module, "find_file_loader", lambda key: load_untyped)
    with pytest.raises(TypeError, match="pydantic model"):
        schema_module.registered_model("patient")


def test_no_registered_loader_means_no_schema_for_that_kind(monkeypatch):
    monkeypatch.setattr(schema_module, "find_file_loader", lambda key: None)
    assert schema_module.registered_model("patient") is None
    assert "patient-schema.json" not in schema_module.schemas()
