"""MQTT link and broker URLs, parsed without importing the MQTT library.

``mqtt://HOST[:PORT]/PREFIX`` is plain MQTT (port 1883). ``mqtt+tls://HOST[:PORT]/PREFIX``
(port 8883) is MQTT over TLS and may carry what a secured broker asks of a client:

- ``ca=PATH``: the CA that signed the broker's certificate (else the system trust store);
- ``cert=PATH&key=PATH``: this client's certificate, for brokers that require one;
- ``username=NAME`` and ``password_file=PATH`` (the password on the file's first line).

Credentials go only over TLS: a password or client certificate on a plain ``mqtt://`` URL is
refused rather than sent in the clear. A broker URL (the room's ``broker:``, ``--broker``, the
endpoints file) has the same form without the prefix; a host-less link ``mqtt:///PREFIX``
takes the broker's scheme, address and options (:func:`link_on_broker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, quote, urlencode, urlunsplit

from ._tls import TLS_OPTIONS, TlsFiles
from ._url import BROKER_FORM, MQTT_FORM, bad_url, host_port, query, reject_unknown, split

Role = Literal["host", "device"]
SCHEMES = ("mqtt", "mqtt+tls")
DEFAULT_PORTS = {"mqtt": 1883, "mqtt+tls": 8883}
AUTH_OPTIONS = frozenset({"username", "password_file"})
BROKER_OPTIONS = TLS_OPTIONS | AUTH_OPTIONS


@dataclass(frozen=True)
class BrokerTarget:
    """Where a broker is and how a client proves itself to it (files only, no secrets)."""

    host: str
    port: int
    tls: TlsFiles | None = None  # None: plain MQTT
    username: str | None = None
    password_file: Path | None = None


@dataclass(frozen=True)
class MqttTarget:
    broker: BrokerTarget
    prefix: str
    role: Role


def _broker(url: str, parts: SplitResult, options: dict[str, str], form: str) -> BrokerTarget:
    if parts.scheme not in SCHEMES:
        raise bad_url(url, f"scheme {parts.scheme!r} is not mqtt or mqtt+tls", form)
    if parts.username is not None or parts.password is not None:
        raise bad_url(
            url, "credentials in the address; use username= and password_file= (over TLS)", form
        )
    host, port = host_port(url, parts, form, DEFAULT_PORTS[parts.scheme])
    secured = sorted(BROKER_OPTIONS & set(options))
    if parts.scheme == "mqtt" and secured:
        raise bad_url(
            url,
            f"{', '.join(secured)} need mqtt+tls:// (no credentials or TLS files over plain MQTT)",
            form,
        )
    if "password_file" in options and "username" not in options:
        raise bad_url(url, "password_file= needs username=", form)
    for name in AUTH_OPTIONS:
        if name in options and not options[name]:
            raise bad_url(url, f"{name}= is empty", form)
    tls = TlsFiles.from_options(url, options, form) if parts.scheme == "mqtt+tls" else None
    password_file = options.get("password_file")
    return BrokerTarget(
        host,
        port,
        tls,
        options.get("username"),
        Path(password_file) if password_file else None,
    )


def parse_mqtt_target(url: str, role: Role | None = None) -> MqttTarget:
    """The link's broker, topic prefix and role; ``role`` argument and ``?role=`` must agree."""
    parts = split(url, MQTT_FORM)
    options = query(url, parts, MQTT_FORM)
    reject_unknown(url, options, {"role"} | BROKER_OPTIONS, MQTT_FORM)
    broker = _broker(url, parts, options, MQTT_FORM)
    prefix = parts.path.strip("/")
    if not prefix:
        raise bad_url(url, "no topic prefix", MQTT_FORM)
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise bad_url(url, f"topic prefix {prefix!r} has wildcards or empty levels", MQTT_FORM)
    url_role = options.get("role")
    if url_role is not None and url_role not in ("host", "device"):
        raise bad_url(url, f"role={url_role!r} is not host or device", MQTT_FORM)
    if role is not None and url_role is not None and role != url_role:
        raise bad_url(url, f"role={url_role} in the URL but {role} requested", MQTT_FORM)
    chosen: Role = role or ("device" if url_role == "device" else "host")
    return MqttTarget(broker, prefix, chosen)


def parse_broker_url(url: str) -> BrokerTarget:
    """A broker URL (no topic prefix); ValueError, one line naming the URL, when malformed."""
    parts = split(url if "://" in url else f"mqtt://{url}", BROKER_FORM)
    if parts.path not in ("", "/"):
        raise bad_url(url, "a broker URL has no path (the topic prefix is the link's)", BROKER_FORM)
    options = query(url, parts, BROKER_FORM)
    reject_unknown(url, options, set(BROKER_OPTIONS), BROKER_FORM)
    return _broker(url, parts, options, BROKER_FORM)


def broker_url(
    host: str,
    port: int,
    *,
    tls: TlsFiles | None = None,
    username: str | None = None,
    password_file: Path | None = None,
) -> str:
    """The broker URL :func:`parse_broker_url` reads back (paths quoted, made absolute)."""
    if tls is None:
        return f"mqtt://{host}:{port}"
    options = {
        "ca": tls.ca,
        "cert": tls.cert,
        "key": tls.key,
        "username": username,
        "password_file": password_file,
    }
    text = {
        k: str(v.absolute()) if isinstance(v, Path) else v
        for k, v in options.items()
        if v is not None
    }
    return urlunsplit(
        ("mqtt+tls", f"{host}:{port}", "", urlencode(text, quote_via=quote, safe="/"), "")
    )


def link_on_broker(link: str, broker: str) -> str:
    """A host-less ``mqtt:///PREFIX`` (or ``mqtt+tls:///PREFIX``) link on ``broker``: the
    broker's scheme, address and options, the link's prefix and own options (``role``).

    ValueError when the broker URL is malformed, when the link asks for TLS and the broker is
    plain, or when link and broker both set an option.
    """
    parts = split(link, MQTT_FORM)
    if parts.scheme not in SCHEMES:
        raise bad_url(link, f"scheme {parts.scheme!r} is not mqtt or mqtt+tls", MQTT_FORM)
    target = parse_broker_url(broker)
    b = split(broker if "://" in broker else f"mqtt://{broker}", BROKER_FORM)
    if parts.scheme == "mqtt+tls" and target.tls is None:
        raise ValueError(f"link {link} asks for TLS but broker {broker} is plain mqtt://")
    own = query(link, parts, MQTT_FORM)
    given = query(broker, b, BROKER_FORM)
    both = sorted(set(own) & set(given))
    if both:
        raise ValueError(f"link {link} and broker {broker} both set {', '.join(both)}")
    merged = urlencode({**given, **own}, quote_via=quote, safe="/")
    return urlunsplit((b.scheme, b.netloc, parts.path, merged, ""))
