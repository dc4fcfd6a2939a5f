"""The operator console: a small local web server showing the exam live and taking the
operator's answers and actions (docs/console.md, decision 0014).

* :class:`ConsoleHub` folds the exam's journal lines into what the page shows and hands
  them to each browser through its own bounded queue (a slow browser loses updates, the
  exam never waits);
* :class:`ConsoleServer` serves the page, the event stream and the controls (aiohttp, in a
  thread of its own: nothing it does runs on the exam's loop);
* :class:`ConsoleOperator` answers the exam's prompts from the page
  (``fluoroctl run --operator console``); ``fluoroctl console DIR`` serves a read-only view
  of an exam folder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hub import ConsoleHub
    from .operator import ConsoleOperator
    from .server import ConsoleServer
    from .settings import ConsoleSettings

#: loaded on first use: every room file names ConsoleSettings, few runs serve a console, and
#: the server's aiohttp costs a CLI start that does not need it
_WHERE = {
    "ConsoleHub": ".hub",
    "ConsoleOperator": ".operator",
    "ConsoleServer": ".server",
    "ConsoleSettings": ".settings",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConsoleHub", "ConsoleOperator", "ConsoleServer", "ConsoleSettings"]
