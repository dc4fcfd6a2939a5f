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

from .hub import ConsoleHub
from .operator import ConsoleOperator
from .server import ConsoleServer
from .settings import ConsoleSettings

__all__ = ["ConsoleHub", "ConsoleOperator", "ConsoleServer", "ConsoleSettings"]
