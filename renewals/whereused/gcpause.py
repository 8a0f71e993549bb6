"""Pausing Python's cyclic garbage collector while one commit group of flow exports is imported.

Parsing a flow export makes hundreds of thousands of short-lived objects (elements, strings,
dicts), and reference counting frees almost all of them. But the cyclic collector counts
every allocation and walks the tracked objects each time its thresholds are crossed: about
0.5 ms per flow, a third of a bare parse's time (measured in docs/performance.md). The
collector is paused for one group at a time, so whatever cyclic garbage a group does make lives
at most one group (STORE_GROUP files or STORE_GROUP_SECONDS) and is collected by the first
collection after it.

Written here because no maintained library offers it; Mercurial's `util.nogc` is the same idea.
The collector is one switch for the whole process, so pauses from several threads are counted:
the last one to end restores it, and a collector someone else switched off stays off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Switch the cyclic collector off for the block; the last pause to end switches it back on
    if it was on when the first one began."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
