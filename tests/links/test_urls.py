"""Link URLs: what each scheme accepts, and bad URLs named with the form that was expected."""

from __future__ import annotations

import pytest

from drivers.links import (
    MqttLink,
    SerialLink,
    TcpLink,
    UsbLink,
    open_link,
    parse_mqtt_url,
    parse_serial_url,
    parse_tcp_url,
    parse_usb_url,
)


def test_serial_path_and_pyserial_urls() -> None:
    t = parse_serial_url("serial:///dev/ttyUSB0?baudrate=9600")
    assert (t.port, t.baudrate, t.is_path) == ("/dev/ttyUSB0", 9600, True)
    assert parse_serial_url("serial:///dev/ttyS1").baudrate == 115_200
    t = parse_serial_url("serial+socket://10.0.0.5:4001?baudrate=57600")
    assert (t.port, t.baudrate, t.is_path) == ("socket://10.0.0.5:4001", 57600, False)
    assert parse_serial_url("serial+loop://").port == "loop://"
    # Options other than baudrate belong to pyserial's URL handler and are passed on.
    assert parse_serial_url("serial+loop://?logging=debug").port == "loop://?logging=debug"
    assert parse_serial_url("serial+rfc2217://h:2217").port == "rfc2217://h:2217"


def test_tcp_mqtt_usb_urls() -> None:
    assert parse_tcp_url("tcp://127.0.0.1:5005") == ("127.0.0.1", 5005)
    assert parse_mqtt_url("mqtt://broker/room1/injector") == (
        "broker",
        1883,
        "room1/injector",
        "host",
    )
    assert parse_mqtt_url("mqtt://b:1884/x?role=device")[3] == "device"
    link = MqttLink("mqtt://b:1884/room1/inj", role="device")
    assert (link.read_topic, link.write_topic) == ("room1/inj/down", "room1/inj/up")
    t = parse_usb_url("usb://1209:F10C?backend=sim&host=h&port=9&interface=1&out=2&in=0x82")
    assert (t.vendor_id, t.product_id, t.ids) == (0x1209, 0xF10C, "1209:f10c")
    assert (t.backend, t.backend_options) == ("sim", {"host": "h", "port": "9"})
    assert (t.interface, t.out_ep, t.in_ep) == (1, 0x02, 0x82)
    t = parse_usb_url("usb://1209:f10c")
    assert (t.backend, t.interface, t.out_ep, t.in_ep) == (None, 0, 0x01, 0x81)


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("serial:///dev/ttyUSB0", SerialLink),
        ("serial+loop://", SerialLink),
        ("tcp://localhost:1", TcpLink),
        ("mqtt://localhost/p", MqttLink),
        ("usb://0001:0002", UsbLink),
    ],
)
def test_open_link_picks_the_transport_unopened(url: str, cls: type) -> None:
    link = open_link(url)
    assert type(link) is cls and link.url == url and not link.is_open


@pytest.mark.parametrize(
    ("url", "problem", "expected"),
    [
        ("ftp://host/file", "unknown scheme 'ftp'", "tcp://HOST:PORT"),
        ("/dev/ttyUSB0", "no scheme", "serial:///dev/PATH"),
        ("serial://dev/ttyUSB0", "three slashes", "serial:///dev/PATH"),
        ("serial:///dev/ttyUSB0?baud=9600", "unknown option(s) baud", "serial:///dev/PATH"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "not an integer", "serial:///dev/PATH"),
        ("serial:///dev/ttyUSB0?baudrate=1&baudrate=2", "given twice", "serial:///dev/PATH"),
        ("serial+nosuch://x", "no 'nosuch' URL handler", "serial+SCHEME://"),
        ("serial+socket://", "socket needs HOST:PORT", "serial+SCHEME://"),
        ("tcp://127.0.0.1", "no port", "tcp://HOST:PORT"),
        ("tcp://127.0.0.1:99999", "out of range", "tcp://HOST:PORT"),
        ("tcp://:5000", "no host", "tcp://HOST:PORT"),
        ("tcp://h:1/path", "no path", "tcp://HOST:PORT"),
        ("mqtt://broker:1883", "no topic prefix", "mqtt://HOST[:PORT]/TOPIC-PREFIX"),
        ("mqtt://broker/room/#", "MQTT wildcard", "mqtt://HOST[:PORT]/TOPIC-PREFIX"),
        ("mqtt://broker/room/+/x", "wildcards", "mqtt://HOST[:PORT]/TOPIC-PREFIX"),
        ("mqtt://broker/p?role=boss", "role='boss'", "mqtt://HOST[:PORT]/TOPIC-PREFIX"),
        ("usb://1209-f10c", "is not VVVV:PPPP", "usb://VVVV:PPPP?backend=NAME"),
        ("usb://1209:f10c?out=0x81", "out=129 out of range", "usb://VVVV:PPPP?backend=NAME"),
        ("usb://1209:f10c?in=1", "in=1 out of range", "usb://VVVV:PPPP?backend=NAME"),
        ("usb://1209:f10c?port=5", "need a backend=NAME", "usb://VVVV:PPPP?backend=NAME"),
    ],
)
def test_bad_urls_name_the_url_and_the_expected_form(url: str, problem: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        open_link(url)
    message = str(info.value)
    assert message.startswith(f"bad link URL {url!r}: ")
    assert problem in message
    assert expected in message.split("; expected ", 1)[1]


def test_role_conflict_is_refused() -> None:
    with pytest.raises(ValueError, match="role=device in the URL but host requested"):
        MqttLink("mqtt://b/p?role=device", role="host")
