"""Microbenchmark of DTVG regrouping (:func:`mtpt.methods.dtvg.grouping.select_group`) against a training step.

DTVG regroups on every training forward pass, so its cost is paid once per step. This times one call with
the paper's 6 sources and with 26 (every dataset as a source), L = 100 virtual tokens and d = 576 (SmolLM2's
hidden size), on 2 CPU threads, and reports the median and minimum milliseconds per call. It also times the
method's whole per-step overhead without the backbone (:class:`mtpt.methods.dtvg.module.DynamicGrouping`:
grouping + merge + backward through the merge) and sets both next to one training step:

* default: a supplied step time (``--step-ms``, default 1500 ms: a SmolLM2-135M step at batch 8, bf16, on a
  quiet 2-core CPU);
* ``--real``: a measured SmolLM2-135M step (forward + backward, batch 8, bf16) with a 6-source DTVG prompt.

Run: ``PYTHONPATH=src python -m benchmarks.grouping_microbench [--real] [--step-ms MS]``.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch

from mtpt.methods.dtvg.grouping import select_group


def _inputs(num_sources: int, length: int, dim: int, seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(length, dim, generator=gen, dtype=dtype)
    # Sources correlated with the target so that several pass the threshold and the KC prefix scan has work.
    sources = 0.5 * target + torch.randn(num_sources, length, dim, generator=gen, dtype=dtype)
    target_scale = torch.ones(length, dtype=dtype, requires_grad=True)  # as trainable scales are in stage II
    source_scales = torch.ones(num_sources, length, dtype=dtype, requires_grad=True)
    return target, sources, target_scale, source_scales


def _time_ms(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run(
    sources: Sequence[int] = (6, 26),
    L: int = 100,
    d: int = 576,
    repeats: int = 200,
    warmup: int = 10,
    threads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Time ``select_group`` for each number of sources.

    Returns:
        ``{"L", "d", "threads", "repeats", "dtype", "results": {S: {"median_ms", "min_ms", "group_size"}}}``.
        The process-wide torch thread count is restored afterwards.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = {}
        for num_sources in sources:
            args = _inputs(num_sources, L, d, seed, dtype)
            times = _time_ms(lambda: select_group(*args), repeats, min(warmup, repeats))
            results[num_sources] = {
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "group_size": len(select_group(*args)),
            }
    finally:
        torch.set_num_threads(threads_before)
    return {"L": L, "d": d, "threads": threads, "repeats": repeats, "dtype": str(dtype), "results": results}


def format_table(report: dict) -> str:
    """A plain-text table of :func:`run`'s report."""
    lines = [
        f"select_group  L={report['L']} d={report['d']} threads={report['threads']} "
        f"repeats={report['repeats']} {report['dtype']}",
        f"{'sources':>8} {'median ms':>10} {'min ms':>8} {'group':>6}",
    ]
    for num_sources, row in report["results"].items():
        lines.append(f"{num_sources:>8} {row['median_ms']:>10.3f} {row['min_ms']:>8.3f} {row['group_size']:>6}")
    return "\n".join(lines)


def method_overhead(
    sources: Sequence[int] = (6, 26),
    L: int = 100,
    d: int = 576,
    repeats: int = 50,
    warmup: int = 3,
    threads: int = 2,
    seed: int = 0,
) -> dict:
    """Time DTVG's own work in one training step, without the backbone: the module's training forward (grouping
    + merge) and the backward pass through the merged prompt. Same report layout as :func:`run`."""
    from mtpt.methods.dtvg.module import DynamicGrouping

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = {}
        for num_sources in sources:
            target, vectors, _, _ = _inputs(num_sources, L, d, seed, torch.float32)
            method = DynamicGrouping(torch.zeros(L, d), target, vectors, [f"s{i}" for i in range(num_sources)]).train()

            def step(method=method):
                method.zero_grad(set_to_none=True)
                method.merged(method.decide()[0]).sum().backward()

            times = _time_ms(step, repeats, min(warmup, repeats))
            results[num_sources] = {"median_ms": statistics.median(times), "min_ms": min(times),
                                    "group_size": len(method.decide()[0])}
    finally:
        torch.set_num_threads(threads_before)
    return {"L": L, "d": d, "threads": threads, "repeats": repeats, "results": results}


def real_step_ms(batch_size: int = 8, repeats: int = 3, threads: int = 2, precision: str = "bf16") -> float:
    """Median milliseconds of one SmolLM2-135M training step (forward + backward) behind a 6-source DTVG prompt."""
    from mtpt.backbones import load_backbone
    from mtpt.batching import Tokenizer, pad_batch
    from mtpt.methods.dtvg.module import DynamicGrouping
    from mtpt.model import SoftPromptModel, task_loss

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        backbone = load_backbone("smollm2-135m")
        target, vectors, _, _ = _inputs(6, 100, backbone.hidden_size, 0, torch.float32)
        method = DynamicGrouping(torch.zeros_like(target), 0.01 * target, 0.01 * vectors, [f"s{i}" for i in range(6)])
        model = SoftPromptModel(backbone, method).train()
        tok = Tokenizer(backbone.tokenizer, max_input_tokens=256)
        text = "premise: a man is playing a guitar on stage. hypothesis: someone makes music. entailment?"
        batch = pad_batch([tok.input_ids(text)] * batch_size, [tok.target_ids(" yes")] * batch_size,
                          [0] * batch_size, tok.pad_id)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

        def step():
            method.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = task_loss(model(batch))
            loss.backward()

        return statistics.median(_time_ms(step, repeats, 1))
    finally:
        torch.set_num_threads(threads_before)


def compare_to_step(report: dict, overhead: dict, step_ms: float, step_label: str) -> str:
    """A table: grouping per call and DTVG's per-step overhead, each also as a share of one training step."""
    if not step_ms > 0:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
    lines = [
        f"training step: {step_ms:.1f} ms ({step_label})",
        f"{'sources':>8} {'grouping ms':>12} {'% of step':>10} {'DTVG overhead ms':>17} {'% of step':>10}",
    ]
    for num_sources, row in report["results"].items():
        extra = overhead["results"].get(num_sources, {}).get("median_ms", float("nan"))
        lines.append(f"{num_sources:>8} {row['median_ms']:>12.3f} {100 * row['median_ms'] / step_ms:>9.3f}% "
                     f"{extra:>17.3f} {100 * extra / step_ms:>9.3f}%")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true", help="Measure a real SmolLM2-135M step (loads the model).")
    parser.add_argument("--step-ms", type=float, default=REFERENCE_STEP_MS,
                        help="Step time to compare with when --real is not given.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    report = run(threads=args.threads)
    overhead = method_overhead(threads=args.threads)
    print(format_table(report))
    if args.real:
        step_ms, label = real_step_ms(threads=args.threads), "measured SmolLM2-135M, batch 8, bf16"
    else:
        step_ms, label = args.step_ms, "supplied; --real measures one"
    print(compare_to_step(report, overhead, step_ms, label))


REFERENCE_STEP_MS = 1500.0
"""A SmolLM2-135M training step at batch 8 with bf16 on a quiet 2-core CPU (measured for the project)."""


if __name__ == "__main__":
    main()
