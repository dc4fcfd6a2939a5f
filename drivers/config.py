"""YAML configuration files validated by pydantic, with errors that name file, line and field.

Rooms, protocols and simulated patients all load through :func:`load_model`, so every bad
file gets the same kind of message::

    configs/protocols/bad.yaml:14: protocol.steps[3].at: invalid duration '5 minutes' (use ...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class LocatedValueError(ValueError):
    """A model-level validation error that knows which part of the file it is about.

    Raise it from a ``model_validator`` with the path *relative to that model*
    (e.g. ``("steps", 3, "at")``) so the message points at the offending line.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class ConfigError(Exception):
    """A configuration file is unreadable or invalid."""

    def __init__(self, path: Path | str, line: int | None, field: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path``; return the data and the composed node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, "", f"cannot read file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, "", f"YAML syntax: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "", f"YAML syntax: {exc}") from None
    return data, node


def load_model(path: Path | str, model: type[M], root_key: str | None = None) -> M:
    """Load ``path`` and validate it as ``model``.

    With ``root_key`` the file must be a mapping holding that key (``protocol:``, ``room:``,
    ``patient:``); the key's value is validated, and line numbers still point into the file.
    """
    path = Path(path)
    data, node = load_yaml(path)
    prefix: tuple[str | int, ...] = ()
    if root_key is not None:
        if not isinstance(data, dict) or root_key not in data:
            found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                path, 1, root_key, f"expected a top-level '{root_key}:' mapping (found {found})"
            )
        data = data[root_key]
        prefix = (root_key,)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, node, prefix, exc) from None


def _first_error(
    path: Path, node: yaml.Node | None, prefix: tuple[str | int, ...], exc: ValidationError
) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedValueError):
        loc += cause.loc
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += (str((err.get("ctx") or {}).get("discriminator", "")).strip("'\""),)
    line, full = _line_of(node, prefix + loc)
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see docs/protocol-schema.json)"
    elif err["type"] == "missing":
        message = "required field is missing"
    field = _format_loc(full)
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(path, line, field, message)


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(
    node: yaml.Node | None, loc: Sequence[str | int]
) -> tuple[int | None, tuple[str | int, ...]]:
    """Line (1-based) of the deepest node along ``loc`` that exists in the file, and ``loc``
    without the parts pydantic added that the user never wrote (union member tags)."""
    if node is None:
        return None, tuple(loc)
    line = node.start_mark.line + 1
    kept: list[str | int] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        child = _child(node, part)
        if child is None:
            nxt = parts[i + 1] if i + 1 < len(parts) else None
            if isinstance(part, str) and (
                (nxt is not None and _child(node, nxt) is not None) or _is_tag_value(node, part)
            ):
                i += 1  # a discriminated-union tag such as "capture": the user never wrote it
                continue
            kept.extend(parts[i:])
            break
        kept.append(part)
        line = _key_line(node, part) or child.start_mark.line + 1
        node = child
        i += 1
    return line, tuple(kept)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def _is_tag_value(node: yaml.Node, part: str) -> bool:
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(v, yaml.ScalarNode) and v.value == part for _k, v in node.value
    )


def _key_line(node: yaml.Node, part: str | int) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return int(key.start_mark.line) + 1
    return None


def find_file_loader(root_key: str) -> Callable[[Path], object] | None:
    """Loader for files whose top-level key is ``root_key``, registered by a package.

    Packages that own a file kind (the simulator owns ``patient:``) register a loader in the
    ``fluoroctl.files`` entry-point group, so ``fluoroctl validate`` checks them without the
    scheduler importing the simulator.
    """
    for ep in entry_points(group="fluoroctl.files", name=root_key):
        loader: Callable[[Path], object] = ep.load()
        return loader
    return None
