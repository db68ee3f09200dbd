"""Python imports this module at start-up when this directory is on PYTHONPATH (``site``'s
``sitecustomize`` hook). With ``LEADDB_TEST_WINDOWS_SEMANTICS=1`` it installs the Windows view
(``windows_view.py``) before anything else is imported, in pytest's process and in every Python
child that inherits the environment. Then it runs the ``sitecustomize`` this one shadows, if
there is one (Debian's Python has its own)."""

import os
import sys

if os.environ.get("LEADDB_TEST_WINDOWS_SEMANTICS") == "1":
    import windows_view

    windows_view.install()


def _run_the_shadowed_one() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        import sitecustomize  # noqa: F401 - the next one on sys.path, if any
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved
        if ours is not None:
            sys.modules["sitecustomize"] = ours


_run_the_shadowed_one()
