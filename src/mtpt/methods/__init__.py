"""Prompt methods: each subfolder is one method and registers itself with :mod:`mtpt.registry`, implementing
the contract of :mod:`mtpt.contract`. Nothing outside this package imports from it (the registry discovers it)."""
