"""URL forms of the secured transports (``mqtt+tls://``, ``tcp+tls://``, broker URLs): what is
accepted, what is refused in one line, and how a host-less link takes the broker's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.links import LinkError, MqttLink, TcpLink, open_link
from drivers.links._mqtt_url import broker_url, link_on_broker, parse_broker_url
from drivers.links._tls import TlsFiles
from drivers.links._url import redact
from scheduler.links import Endpoints, LinkConfigError, resolve_links

BROKER = "mqtt+tls://broker.example:8884?ca=/etc/pki/ca.pem&cert=/etc/pki/host.pem&key=/etc/pki/host.key&username=fluoro1&password_file=/etc/fluoro/mqtt.pw"


def test_secured_mqtt_url_parts() -> None:
    link = open_link("mqtt+tls://broker.example/site/inj?ca=ca.pem&username=u&password_file=pw")
    assert isinstance(link, MqttLink)
    broker = link.target.broker
    assert (broker.host, broker.port, link.prefix, link.role) == (
        "broker.example",
        8883,  # the MQTT-over-TLS port unless given
        "site/inj",
        "host",
    )
    assert broker.tls == TlsFiles(ca=Path("ca.pem"))
    assert (broker.username, broker.password_file) == ("u", Path("pw"))


def test_broker_url_round_trip(tmp_path: Path) -> None:
    spaced = tmp_path / "a dir&more"
    url = broker_url(
        "127.0.0.1",
        1234,
        tls=TlsFiles(spaced / "ca.pem", spaced / "c.pem", spaced / "c.key"),
        username="host",
        password_file=spaced / "pw",
    )
    target = parse_broker_url(url)
    assert target.tls == TlsFiles(spaced / "ca.pem", spaced / "c.pem", spaced / "c.key")
    assert (target.host, target.port, target.username) == ("127.0.0.1", 1234, "host")
    assert target.password_file == spaced / "pw"
    assert broker_url("h", 1) == "mqtt://h:1" and parse_broker_url("h:1").tls is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mqtt://b/p?username=u", "need mqtt+tls://"),
        ("mqtt://b/p?ca=ca.pem", "need mqtt+tls://"),
        ("mqtt+tls://b/p?password_file=pw", "password_file= needs username="),
        ("mqtt+tls://b/p?cert=c.pem", "cert= and key= go together"),
        ("mqtt+tls://b/p?ca=", "ca= is empty"),
        ("mqtt+tls://u:secret@b/p", "credentials in the address"),
        ("mqtt+tls://b/p?password=secret", "unknown option(s) password"),
        ("tcp://h:1?ca=ca.pem", "unknown option(s) ca (allowed: none)"),
        ("tcp+tls://h:1?cert=c.pem", "cert= and key= go together"),
        ("tcp+tls://h:1?server=x", "unknown option(s) server (allowed: ca, cert, key)"),
        ("tcps://h:1", "unknown scheme"),
    ],
)
def test_bad_secured_urls_are_one_line(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        open_link(url)
    message = str(info.value)
    assert problem in message and redact(url) in message and "\n" not in message
    assert "secret" not in message  # a password typed into a URL is never echoed


def test_secrets_in_urls_are_redacted() -> None:
    assert redact("mqtt+tls://h:1/p?password=s3&ca=x") == "mqtt+tls://h:1/p?password=***&ca=x"
    assert redact("mqtt://user:s3@h:1/p") == "mqtt://user:***@h:1/p"
    assert redact("mqtt://h/p?password_file=/etc/pw") == "mqtt://h/p?password_file=/etc/pw"


def test_tcp_tls_url() -> None:
    link = open_link("tcp+tls://10.0.0.9:5005?ca=ca.pem&cert=me.pem&key=me.key")
    assert isinstance(link, TcpLink)
    assert link.target.tls == TlsFiles(Path("ca.pem"), Path("me.pem"), Path("me.key"))
    plain = open_link("tcp://10.0.0.9:5005")
    assert isinstance(plain, TcpLink) and plain.target.tls is None


def test_host_less_link_takes_the_brokers_scheme_and_options() -> None:
    merged = link_on_broker("mqtt:///site/fluoro1/injector?role=host", BROKER)
    link = open_link(merged)
    assert isinstance(link, MqttLink) and merged.startswith("mqtt+tls://broker.example:8884/")
    assert link.prefix == "site/fluoro1/injector"
    assert link.target.broker == parse_broker_url(BROKER)
    assert link_on_broker("mqtt:///p", "mqtt://10.0.0.5") == "mqtt://10.0.0.5/p"


def test_room_broker_problems_are_one_line_config_errors() -> None:
    links = {"injector": "mqtt:///site/inj"}
    for broker, problem in [
        ("mqtt://10.0.0.5?username=u", "need mqtt+tls://"),
        ("mqtt+tls://10.0.0.5/extra", "a broker URL has no path"),
        ("http://10.0.0.5", "scheme 'http' is not mqtt or mqtt+tls"),
        ("mqtt+tls://10.0.0.5?ca=x&role=device", "unknown option(s) role"),
    ]:
        with pytest.raises(LinkConfigError) as info:
            resolve_links(links, endpoints=None, broker=None, room_broker=broker)
        assert problem in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LinkConfigError, match="asks for TLS but broker"):
        resolve_links(
            {"injector": "mqtt+tls:///site/inj"},
            endpoints=None,
            broker=None,
            room_broker="mqtt://10.0.0.5",
        )
    with pytest.raises(LinkConfigError, match="both set ca"):
        resolve_links(
            {"injector": "mqtt:///site/inj?ca=mine.pem"},
            endpoints=None,
            broker=None,
            room_broker=BROKER,
        )


def test_run_takes_the_secured_broker_from_the_endpoints_file(tmp_path: Path) -> None:
    served = "mqtt+tls://127.0.0.1:4242?ca=/r/pki/ca.pem&cert=/r/pki/host.pem&key=/r/pki/host.key&username=host&password_file=/r/broker/passwords/host"
    endpoints = Endpoints(tmp_path / "endpoints.json", {"effects": "127.0.0.1:9"}, served)
    links = resolve_links(
        {"injector": "mqtt:///fluoroctl/simroom/injector", "effects": "tcp://${effects}"},
        endpoints=endpoints,
        broker=None,
        room_broker=None,
    )
    injector = open_link(links["injector"])
    assert isinstance(injector, MqttLink)
    broker = injector.target.broker
    assert (broker.host, broker.port, broker.username) == ("127.0.0.1", 4242, "host")
    assert broker.tls == TlsFiles(
        Path("/r/pki/ca.pem"), Path("/r/pki/host.pem"), Path("/r/pki/host.key")
    )
    assert links["effects"] == "tcp://127.0.0.1:9"


@pytest.mark.asyncio
async def test_credential_files_are_checked_when_the_link_opens(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    url = f"mqtt+tls://127.0.0.1:1/p?username=u&password_file={pw}"
    with pytest.raises(
        LinkError, match=r"password file .* is open to other users \(mode 0644\)"
    ) as info:
        await open_link(url).open()
    assert "s3cret" not in str(info.value)
    with pytest.raises(LinkError, match=r"CA file .*missing\.pem not found"):
        await open_link(f"tcp+tls://127.0.0.1:1?ca={tmp_path / 'missing.pem'}").open()
    key = tmp_path / "k.key"
    key.write_text("x")
    key.chmod(0o640)
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(LinkError, match=r"private key .* is open to other users"):
        await open_link(f"tcp+tls://127.0.0.1:1?cert={tmp_path / 'c.pem'}&key={key}").open()
