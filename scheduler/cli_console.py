"""``fluoroctl console DIR``: a read-only console of a running or finished exam folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .paths import room_path
from .room import load_room

#: how often the folder's journal is read for new lines
POLL_S = 0.5


def add_console_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser(
        "console",
        help="serve a read-only operator console of an exam folder (running or finished)",
    )
    console.add_argument("dir", type=Path, help="the exam folder (its events.jsonl)")
    console.add_argument(
        "--room",
        type=room_path,
        help="serve as this room's console: says (console:) where it listens and, for "
        "other hosts, its HTTPS certificate and password login (docs/console.md)",
    )
    console.add_argument("--host", default=None, help="address to bind (default: loopback)")
    console.add_argument("--port", type=int, default=None, help="port (default: any free one)")
    console.set_defaults(func=_cmd_console)


def _cmd_console(args: argparse.Namespace) -> int:
    # the server (aiohttp) is loaded only for this command, not at every CLI start
    from .console import ConsoleHub, ConsoleServer, ConsoleSettings
    from .console.folder import FolderTail

    if not (args.dir / "events.jsonl").is_file():
        print(f"error: {args.dir}: no events.jsonl (not an exam folder)", file=sys.stderr)
        return 2
    from .console.security import check_console
    from .console.settings import WILDCARDS

    settings, password = ConsoleSettings(), None
    if args.room is not None:
        room = load_room(args.room)
        settings = room.console
        password = check_console(settings, room.key_file)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = ConsoleSettings.model_validate({**settings.model_dump(), **overrides})
        if not settings.loopback and (
            not settings.tls or (settings.host in WILDCARDS and not settings.server_names)
        ):
            print(
                f"error: --host {settings.host} is not loopback: a console other hosts reach "
                "needs --room with console.tls_cert/tls_key, a key_file and server_names",
                file=sys.stderr,
            )
            return 2
    hub = ConsoleHub()
    tail = FolderTail(args.dir, hub)
    tail.poll()
    server = ConsoleServer(hub, args.dir, None, settings, password=password)
    print(f"read-only console of {args.dir}: {server.start()}", flush=True)
    if password is not None:
        print(f"  or log in at {server.base_url}/login (fluoroctl keys console ROOM)", flush=True)
    print("Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(POLL_S)
            tail.poll()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
