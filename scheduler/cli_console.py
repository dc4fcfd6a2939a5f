"""``fluoroctl console DIR``: a read-only console of a running or finished exam folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: how often the folder's journal is read for new lines
POLL_S = 0.5


def add_console_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser(
        "console",
        help="serve a read-only operator console of an exam folder (running or finished)",
    )
    console.add_argument("dir", type=Path, help="the exam folder (its events.jsonl)")
    console.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    console.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    console.set_defaults(func=_cmd_console)


def _cmd_console(args: argparse.Namespace) -> int:
    # the server (aiohttp) is loaded only for this command, not at every CLI start
    from .console import ConsoleHub, ConsoleServer, ConsoleSettings
    from .console.folder import FolderTail

    if not (args.dir / "events.jsonl").is_file():
        print(f"error: {args.dir}: no events.jsonl (not an exam folder)", file=sys.stderr)
        return 2
    hub = ConsoleHub()
    tail = FolderTail(args.dir, hub)
    tail.poll()
    server = ConsoleServer(hub, args.dir, None, ConsoleSettings(host=args.host, port=args.port))
    print(f"read-only console of {args.dir}: {server.start()}", flush=True)
    print("Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(POLL_S)
            tail.poll()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
