"""The JSON Schemas in docs/ must describe the models the code validates with."""

import json

from scheduler.schema import render, schemas


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
