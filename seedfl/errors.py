"""Which exceptions are the user's to fix (bad config, data, model, state dir).

The CLI prints these as one line and exits 2; anything else is a bug or a
runtime failure and keeps its traceback. Classes are imported lazily so that a
light command (``seedfl status``) does not import torch.
"""

from __future__ import annotations

import importlib


class UsageError(Exception):
    """A bad invocation: wrong flag combination, missing file, unreachable node."""


_USER_ERRORS = (
    ("seedfl.core.config", "ConfigError"),
    ("seedfl.training.data", "DataError"),
    ("seedfl.training.task", "TaskError"),
    ("seedfl.training.model", "ModelError"),
    ("seedfl.training.assets", "AssetError"),
    ("seedfl.training.statedir", "StateDirError"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [UsageError]
    for module, name in _USER_ERRORS:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        found.append(cls)
    return tuple(found)
