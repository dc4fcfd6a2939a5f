"""YAML configuration files validated by pydantic, with errors that name file, line and field.

Rooms, protocols and simulated patients all load through :func:`load_model`, so every bad
file gets the same kind of message::

    configs/protocols/bad.yaml:14: protocol.steps[3].at: invalid duration '5 minutes' (use ...)
"""

from __future__ import annotations

import re
import stat
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
        # One line, always: the CLI prints exactly one line per bad input.
        self.message = " ".join(message.split())
        message = self.message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


#: Input files larger than this are refused before they are read (the shipped ones are < 5 kB).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting accepted; a protocol needs 6 levels (protocol.steps[i].view.angulation.x).
MAX_DEPTH = 64
#: Most values a file may hold once aliases are expanded; bounds what validation walks
#: (a "billion laughs" file is a few hundred bytes that expand to 10^9 values).
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """The safe loader, with constructor failures reported at the value that caused them.

    PyYAML's own constructors raise bare ``ValueError`` for values such as
    ``birth_date: 2026-13-45`` (the timestamp constructor calls ``datetime.date``), which
    carry no position; here they become ``ConstructorError`` with the node's line.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            shown = f" {_short(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            raise _BadValue(node, f"invalid value{shown}: {exc}") from None


class _BadValue(yaml.constructor.ConstructorError):
    """A value PyYAML could not construct, with the node it came from (to name its field)."""

    def __init__(self, node: yaml.Node, problem: str) -> None:
        super().__init__(None, None, problem, node.start_mark)
        self.node = node


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path`` once; return the data and the composed node tree (for line numbers).

    Refused with a :class:`ConfigError` naming the file (and line where known): a file over
    :data:`MAX_FILE_BYTES` (checked before reading), anything that is not UTF-8 YAML, more
    than one document, nesting deeper than :data:`MAX_DEPTH`, aliases that expand beyond
    :data:`MAX_NODES` values or refer to themselves, and duplicate mapping keys.
    """
    path = Path(path)
    text = _read_text(path)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        check_tree(path, node)
        try:
            return loader.construct_document(node), node
        except _BadValue as exc:
            field = format_loc(_path_to(node, exc.node) or ())
            raise ConfigError(
                path, exc.node.start_mark.line + 1, field, exc.problem or ""
            ) from None
    except yaml.constructor.ConstructorError as exc:  # e.g. a !!python/... tag
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, "", f"unsupported YAML: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "unreadable"
        raise ConfigError(path, line, "", f"YAML syntax: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(
            path, line, "", f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "", f"YAML syntax: {exc}") from None
    except RecursionError:
        line = loader.line + 1 if loader is not None else None
        raise ConfigError(
            path, line, "", f"nested too deeply (more than {MAX_DEPTH} levels)"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(path, None, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(path, None, "", "not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(path, None, "", _too_big(info.st_size))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(path, None, "", _too_big(len(raw)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            path, line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)"
        ) from None


def _too_big(size: int) -> str:
    return f"file is {size} bytes; input files are limited to 1 MiB ({MAX_FILE_BYTES} bytes)"


def check_tree(path: Path, root: yaml.Node) -> None:
    """Refuse a node tree that is too deep, too big once aliases expand, recursive, or that
    has a key twice in one mapping.

    Aliases make the tree a graph that can share (or loop back to) nodes, so sizes are
    counted with each node visited once and its expanded size remembered: the work is
    linear in the file, not in what the aliases expand to.
    """
    expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) when expanded
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if done:
            open_nodes.discard(key)
            size = 1 + sum(expanded[id(k)][0] for k in kids)
            depth = 1 + max((expanded[id(k)][1] for k in kids), default=0)
            expanded[key] = (size, depth)
            if size > MAX_NODES:
                raise ConfigError(
                    path,
                    node.start_mark.line + 1,
                    "",
                    f"more than {MAX_NODES} values once YAML aliases are expanded (an alias bomb?)",
                )
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise ConfigError(
                path, node.start_mark.line + 1, "", "recursive YAML alias (refers to itself)"
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(kids) if id(k) not in expanded)
    if expanded[id(root)][1] > MAX_DEPTH:
        deep = root
        for _ in range(MAX_DEPTH):
            deep = max(_children(deep), key=lambda k: expanded[id(k)][1])
        raise ConfigError(
            path, deep.start_mark.line + 1, "", f"nested too deeply (more than {MAX_DEPTH} levels)"
        )
    _check_duplicate_keys(path, root)


def _path_to(root: yaml.Node, target: yaml.Node) -> tuple[str | int, ...] | None:
    """The keys and indexes leading from ``root`` to ``target`` (the first way there)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if node is target:
            return loc
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, (*loc, str(k.value))) for k, v in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(node.value))))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_duplicate_keys(path: Path, root: yaml.Node) -> None:
    """A key given twice in one mapping is an error naming both lines (YAML would keep the
    last value silently). Keys brought in by a ``<<`` merge may be overridden: that is what
    merging is for."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        later: list[tuple[yaml.Node, tuple[str | int, ...]]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Mark] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    ident = (key.tag, key.value)
                    mark = key.start_mark
                    if ident in first:
                        before = first[ident]
                        where = f"line {before.line + 1}"
                        if before.line == mark.line:  # e.g. {volume_ml: 50, volume_ml: 150}
                            where += f", column {before.column + 1}"
                        raise ConfigError(
                            path,
                            mark.line + 1,
                            format_loc((*loc, key.value)),
                            f"duplicate key (first at {where})",
                        )
                    first[ident] = mark
                    later.append((value, (*loc, key.value)))
                else:
                    later.append((value, loc))
        elif isinstance(node, yaml.SequenceNode):
            later.extend((item, (*loc, i)) for i, item in enumerate(node.value))
        stack.extend(reversed(later))


def load_model(path: Path | str, model: type[M], root_key: str | None = None) -> M:
    """Load ``path`` and validate it as ``model``.

    With ``root_key`` the file must be a mapping holding that key (``protocol:``, ``room:``,
    ``patient:``); the key's value is validated, and line numbers still point into the file.
    """
    path = Path(path)
    data, node = load_yaml(path)
    return validate_data(path, data, node, model, root_key)


def validate_data(
    path: Path, data: Any, node: yaml.Node | None, model: type[M], root_key: str | None = None
) -> M:
    """Validate what :func:`load_yaml` returned for ``path`` as ``model`` (see load_model)."""
    prefix: tuple[str | int, ...] = ()
    if root_key is not None:
        if data is None:
            raise ConfigError(path, None, root_key, f"the file is empty (expected '{root_key}:')")
        if not isinstance(data, dict) or root_key not in data:
            if isinstance(data, dict):
                found = "keys " + ", ".join(map(str, data))
            else:
                found = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConfigError(
                path, 1, root_key, f"expected a top-level '{root_key}:' mapping (found {found})"
            )
        data = data[root_key]
        prefix = (root_key,)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, node, prefix, exc) from None


#: where each file kind's fields are described, for "unknown field" messages
_SCHEMAS = {"protocol": "docs/protocol-schema.json", "room": "docs/room-schema.json"}


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
    line, full = line_of(node, prefix + loc)
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        schema = _SCHEMAS.get(str(prefix[0]) if prefix else "", "docs/protocols.md")
        message = f"unknown field (check the spelling; see {schema})"
    elif err["type"] == "missing":
        message = "required field is missing"
    field = format_loc(full)
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(path, line, field, message)


def format_loc(loc: Sequence[str | int]) -> str:
    """``("protocol", "steps", 3, "at")`` → ``protocol.steps[3].at``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_loc(field: str) -> tuple[str | int, ...]:
    """The inverse of :func:`format_loc`: ``protocol.steps[3].at`` → its parts."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        parts.append(int(index) if index else name)
    return tuple(parts)


def locate(path: Path | str, field: str) -> int | None:
    """Line (1-based) in ``path`` of ``field`` (``protocol.steps[3].at``), or of the deepest
    part of it the file spells out; None when the file cannot be read."""
    try:
        _data, node = load_yaml(Path(path))
    except ConfigError:
        return None
    return line_of(node, parse_loc(field))[0]


def line_of(
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
