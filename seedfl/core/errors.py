"""``UserError``: the failures that are the user's to fix, not bugs.

Config, data, task, model, asset and state-dir errors subclass it, and so does
``UsageError`` (a bad invocation). The CLI prints a ``UserError`` as one line
and exits 2; anything else keeps its traceback. A leaf module: it imports
nothing, so every layer can raise these.
"""

from __future__ import annotations

__all__ = ["UsageError", "UserError"]


class UserError(Exception):
    """Something the user can fix: a bad config, data file, model or state dir."""


class UsageError(UserError):
    """A bad invocation: wrong flag combination, missing file, unreachable node."""
