"""Link URL parsing shared by the transports: one place that says what a bad URL looks like."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlsplit

SERIAL_FORMS = "serial:///dev/PATH?baudrate=N or serial+SCHEME://... (any pyserial URL)"
TCP_FORM = "tcp://HOST:PORT or tcp+tls://HOST:PORT[?ca=PATH][&cert=PATH&key=PATH]"
MQTT_FORM = (
    "mqtt://HOST[:PORT]/TOPIC-PREFIX[?role=host|device] or mqtt+tls://HOST[:PORT]/TOPIC-PREFIX"
    "[?ca=PATH][&cert=PATH&key=PATH][&username=NAME[&password_file=PATH]][&role=...]"
)
BROKER_FORM = (
    "mqtt://HOST[:PORT] or "
    "mqtt+tls://HOST[:PORT][?ca=PATH][&cert=PATH&key=PATH][&username=NAME[&password_file=PATH]]"
)
USB_FORM = "usb://VVVV:PPPP?backend=NAME&OPTION=VALUE...&interface=0&out=0x01&in=0x81"


_SECRET_QUERY = re.compile(r"(?i)(pass(?:word)?|secret|token|key_?hex)=[^&#]*")
_SECRET_USERINFO = re.compile(r"(//[^/@:]*:)[^/@]*@")


def redact(url: str) -> str:
    """``url`` with anything that looks like a secret (``password=...``, ``user:pass@``)
    replaced by ``***``: URLs end up in error messages, logs and journals."""
    url = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", url)
    return _SECRET_USERINFO.sub(r"\1***@", url)


def bad_url(url: str, problem: str, expected: str) -> ValueError:
    return ValueError(f"bad link URL {redact(url)!r}: {problem}; expected {expected}")


def split(url: str, expected: str) -> SplitResult:
    if "#" in url:  # a fragment means nothing to a link (and "#" is an MQTT wildcard)
        raise bad_url(url, "'#' (fragment or MQTT wildcard) is not allowed", expected)
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host part
        raise bad_url(url, str(exc), expected) from None


def query(url: str, parts: SplitResult, expected: str) -> dict[str, str]:
    """The query as a dict; a key given twice is an error rather than a silent choice."""
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise bad_url(url, f"unreadable query ({exc})", expected) from None
    for key, value in pairs:
        if key in out:
            raise bad_url(url, f"option {key!r} given twice", expected)
        out[key] = value
    return out


def reject_unknown(url: str, options: dict[str, str], known: set[str], expected: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise bad_url(url, f"unknown option(s) {', '.join(unknown)} (allowed: {allowed})", expected)


def host_port(
    url: str, parts: SplitResult, expected: str, default_port: int | None
) -> tuple[str, int]:
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # port not a number or out of range
        raise bad_url(url, str(exc), expected) from None
    if not host:
        raise bad_url(url, "no host", expected)
    if port is None:
        if default_port is None:
            raise bad_url(url, "no port", expected)
        port = default_port
    if not 1 <= port <= 65535:
        raise bad_url(url, f"port {port} out of range 1..65535", expected)
    return host, port


def int_option(url: str, name: str, text: str, expected: str, lo: int, hi: int) -> int:
    """A decimal or 0x-prefixed integer option within ``lo..hi``."""
    try:
        value = int(text, 0)
    except ValueError:
        raise bad_url(url, f"{name}={text!r} is not an integer", expected) from None
    if not lo <= value <= hi:
        raise bad_url(url, f"{name}={value} out of range {lo}..{hi}", expected)
    return value
