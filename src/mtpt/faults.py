"""Test hook for fault injection: ``MTPT_FAULT=<point>:<n>[:kill|:sleep=<seconds>|:wait=<file>]`` kills this
process with SIGKILL (or sleeps, or waits until ``<file>`` exists, after creating ``<file>.waiting``) at the
``n``-th time it passes the named point, e.g. ``checkpoint.files_written:2``.

Used by ``scripts/fault_injection.py`` and the tests to stop a run exactly between two steps of a checkpoint write
or swap. Unset (always, outside tests) it costs one dictionary lookup per point. Points: ``checkpoint.file``
(after each file of a checkpoint), ``checkpoint.files_written``, ``publish.before_link``, ``publish.link_made``,
``publish.after_link``, ``publish.between_renames``, ``train.step`` (after each optimizer step),
``train.logged`` (after a metrics line), ``run.locked`` (the run folder was just claimed).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "MTPT_FAULT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Pass the named point: act when ``$MTPT_FAULT`` asks for this point and this hit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, rest = spec.partition(":")
    if wanted != name:
        return
    count, _, action = rest.partition(":")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(count or 1):
        return
    if action.startswith("sleep="):
        time.sleep(float(action.removeprefix("sleep=")))
        return
    if action.startswith("wait="):
        go = Path(action.removeprefix("wait="))
        Path(f"{go}.waiting").touch()
        deadline = time.monotonic() + 600
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    os.kill(os.getpid(), signal.SIGKILL)
