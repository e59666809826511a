"""The adversarial tests start real nodes with the integration tests' ``nodekit``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
