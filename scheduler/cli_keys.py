"""``fluoroctl keys``: the room secret wire sessions are authenticated with (docs/security.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drivers.wire.keys import load_key_file, write_key_file

from .paths import room_path
from .room import load_room


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="room keys for authenticated device links")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser(
        "new",
        help="create the room's key file (mode 0600) where its key_file says, else beside "
        "the room file; never prints the key",
    )
    new.add_argument("room", type=room_path, help="room file (or a shipped room's name)")
    new.add_argument(
        "--force",
        action="store_true",
        help="replace an existing key (every device provisioned with the old one is locked out)",
    )
    new.set_defaults(func=_cmd_keys_new)
    show = keys_sub.add_parser(
        "show", help="check the room's key file and print its fingerprint (not the key)"
    )
    show.add_argument("room", type=room_path)
    show.set_defaults(func=_cmd_keys_show)
    console = keys_sub.add_parser(
        "console",
        help="print the operator console's login password (derived from the room key; "
        "only an HTTPS console accepts it)",
    )
    console.add_argument("room", type=room_path)
    console.set_defaults(func=_cmd_keys_console)
    cert = keys_sub.add_parser(
        "console-cert",
        help="make a self-signed HTTPS certificate for the operator console (a hospital "
        "PKI's certificate is better); prints its fingerprint and the room lines",
    )
    cert.add_argument("room", type=room_path)
    cert.add_argument(
        "--name",
        action="append",
        required=True,
        help="a host name or address browsers use to reach the console (repeatable)",
    )
    cert.add_argument("--force", action="store_true", help="replace an existing certificate")
    cert.set_defaults(func=_cmd_keys_console_cert)


def _key_path(room_file: Path) -> tuple[Path, bool]:
    """Where the room's key lives, and whether the room file already says so."""
    room = load_room(room_file)
    if room.key_file:
        return Path(room.key_file), True
    return room_file.with_suffix(".key"), False


def _cmd_keys_new(args: argparse.Namespace) -> int:
    path, named = _key_path(args.room)
    key = write_key_file(path, force=args.force)
    print(f"{path}: new room key {key.fingerprint} (mode 0600)")
    if not named:
        print(f"add to {args.room} under room:  key_file: {path.resolve()}")
    print("provision every device of the room with this file; keep it off shared storage")
    return 0


def _cmd_keys_show(args: argparse.Namespace) -> int:
    path, _ = _key_path(args.room)
    key = load_key_file(path)
    print(f"{path}: room key {key.fingerprint}")
    return 0


def _cmd_keys_console(args: argparse.Namespace) -> int:
    from .console.security import console_password

    path, _ = _key_path(args.room)
    key = load_key_file(path)
    print(console_password(key.secret))
    room = load_room(args.room)
    if not room.console.tls:
        print(
            f"note: {args.room} serves its console without HTTPS (console.tls_cert): only the "
            "one-time URL opens it there",
            file=sys.stderr,
        )
    return 0


def _cmd_keys_console_cert(args: argparse.Namespace) -> int:
    from .console.tls import write_self_signed

    key_path, _ = _key_path(args.room)
    cert, key = key_path.with_name("console.pem"), key_path.with_name("console.key")
    if cert.exists() and not args.force:
        print(f"error: {cert} exists (--force replaces it)", file=sys.stderr)
        return 2
    fingerprint = write_self_signed(args.name, cert, key)
    print(f"{cert}: self-signed for {', '.join(args.name)}; SHA-256 {fingerprint}")
    print(f"{key}: its private key (mode 0600)")
    print("compare the fingerprint with what the browser shows before trusting it; add to")
    print(f"{args.room} under room:")
    print(f"  console: {{host: 0.0.0.0, port: 8443, tls_cert: {cert}, tls_key: {key},")
    print(f"            server_names: [{', '.join(args.name)}]}}")
    return 0
