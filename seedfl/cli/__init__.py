"""The ``seedfl`` command line: the parser and commands (``app.py``) and the
status and peers views (``status.py``). A face: it builds ``NodeOptions`` and
calls into the node, the demo and the benches, and nothing imports it back.
"""

from seedfl.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
