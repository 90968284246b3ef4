"""Benchmarks of mtpt's methods: speed (:mod:`mtpt.bench.speed`) and quality (:mod:`mtpt.bench.quality`)."""
