"""The source-prompt library: one stored initial prompt and the prompts tuned from it on single tasks.

:class:`SourceLibrary` reads and writes the format (see :mod:`mtpt.library.format`); the source stage that
fills it is :mod:`mtpt.library.source_stage` (``mtpt train-source``); :mod:`mtpt.library.similarity` writes
similarity reports (``mtpt similarity``).
"""

from mtpt.library.format import FORMAT_VERSION, MIXTURE, LibraryEntry, SourceLibrary

__all__ = ["FORMAT_VERSION", "MIXTURE", "LibraryEntry", "SourceLibrary"]
