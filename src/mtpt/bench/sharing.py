"""Work that several benchmark workers share: each unit is claimed with a lock file beside its folder, so two
workers running the same command split the units between them instead of doing each twice.

A unit may depend on others (``ready``): a worker takes any unit that is ready and unclaimed; when nothing is left
that it can take, it waits for a unit another worker holds (or, while the units left wait on others' work, polls),
so a call returns only once every unit is done (or, with ``wait=False``, once nothing is left that it can take
now: a benchmark worker then moves on to work that does not need those units). A unit whose worker died is taken over (``flock`` locks end with
their process). Used by :mod:`mtpt.bench.quality` for library sources, source stages, search runs and gate prompts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtpt.locking import exclusive, lock_path_for

__all__ = ["Job", "share_work"]


@dataclass
class Job:
    """One unit of shared work."""

    folder: Path
    """The folder the work writes (its lock file is ``.<name>.lock`` beside it)."""
    work: Callable[[], None]
    done: Callable[[], bool]
    """Whether the unit is finished (checked again after claiming: another worker may have finished it)."""
    ready: Callable[[], bool] = field(default=lambda: True)
    """Whether what the unit needs is finished (e.g. the mixture prompt needs every single-source prompt)."""


def share_work(jobs: list[Job], poll_s: float = 30.0, wait: bool = True) -> list[tuple[Path, str]]:
    """Do every unit of ``jobs`` that is not done and that no other worker holds, as its dependencies allow; return
    when all are done, with (folder, status) per unit: ``skipped`` (done before), ``done here`` or ``done
    elsewhere``. With ``wait=False`` it returns as soon as every unit left is held by another worker or waits on
    such a unit; those are ``held elsewhere``."""
    status: dict[int, str] = {}
    pending = list(range(len(jobs)))
    while pending:
        progressed = False
        for i in list(pending):
            job = jobs[i]
            if job.done():
                status.setdefault(i, "skipped")
            elif not job.ready():
                continue
            else:
                with exclusive(lock_path_for(job.folder), wait=False) as mine:
                    if not mine:
                        continue
                    if job.done():
                        status[i] = "done elsewhere"
                    else:
                        job.work()
                        status[i] = "done here"
            pending.remove(i)
            progressed = True
        if pending and not progressed and not wait:
            status.update({i: "held elsewhere" for i in pending})
            break
        if pending and not progressed:
            held = [jobs[i] for i in pending if jobs[i].ready()]
            if held:  # another worker's: wait for it, then look again (done, or left to us by a crash)
                with exclusive(lock_path_for(held[0].folder)):
                    pass
                for i in pending:
                    if jobs[i] is held[0]:
                        status[i] = "done elsewhere"
            else:  # every unit left waits on work other workers hold
                time.sleep(poll_s)
    return [(job.folder, status[i]) for i, job in enumerate(jobs)]
