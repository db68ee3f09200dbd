"""benchmarks/peers.py (a script, not a package module), loaded once as the module ``peers`` for
the tests that check it (tests/test_peers.py, tests/test_peers_provenance.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"


def load():
    """The harness's module: the one already loaded, else loaded now."""
    if "peers" in sys.modules:
        return sys.modules["peers"]
    spec = importlib.util.spec_from_file_location("peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
