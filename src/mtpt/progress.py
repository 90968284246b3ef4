"""Progress bars that stay under the user's control."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def progress_bar(shown: bool, **options: Any) -> tqdm:
    """A tqdm bar, switched off where ``shown`` is false.

    ``disable`` is passed only to switch a bar off: an explicit ``disable=False`` would override the user's
    ``TQDM_DISABLE`` environment variable, which tqdm applies only to arguments left unset.
    """
    return tqdm(**options) if shown else tqdm(disable=True, **options)
