"""``mtpt predict`` and ``mtpt serve``: a run folder, or ``--backbone NAME --task T`` for the zero-shot baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtpt.errors import MtptError


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", default=None, help="A folder written by `mtpt train`.")
    parser.add_argument("--backbone", default=None,
                        help="Instead of a run: a backbone (alias, model folder, hub id) used zero-shot.")
    parser.add_argument("--task", nargs="+", default=None,
                        help="With a run: the task of rows without a `task` field. With --backbone: the task(s), "
                             "registered names or YAML task specs.")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint folder (runs only).")
    parser.add_argument("--batch-size", type=int, default=None, help="Rows per batch (default: the run's).")
    parser.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"], default=None,
                        help="Autocast precision (default: the run's, as `mtpt evaluate` uses). Under bf16 a row's "
                             "scores shift slightly with the rows it is batched with; `no` (fp32) avoids that.")
    parser.add_argument("--data-root", default=None,
                        help="Benchmark data folder for --backbone with registered tasks (default: $MTPT_DATA_ROOT).")


def _check_model_arguments(args, parser: argparse.ArgumentParser) -> None:
    if (args.run_dir is None) == (args.backbone is None):
        parser.error("give a run folder, or --backbone NAME with --task")
    if args.run_dir is not None and args.task is not None and len(args.task) > 1:
        parser.error("with a run, --task names one task (the default of rows without a `task` field)")
    if args.backbone is not None and not args.task:
        parser.error("--backbone needs --task (a registered task name or a YAML task spec)")


def _load(args, parser: argparse.ArgumentParser):
    from mtpt.inference.predictor import load_predictor

    _check_model_arguments(args, parser)
    if args.run_dir is not None:
        return load_predictor(args.run_dir, args.task[0] if args.task else None, checkpoint=args.checkpoint,
                              batch_size=args.batch_size, precision=args.precision)
    return load_predictor(args.backbone, args.task, batch_size=args.batch_size, precision=args.precision,
                          data_root=args.data_root)


def cmd_predict(argv: list[str]) -> int:
    """Predict the label (with every label's score) or the generated text of each row of a CSV, TSV or JSONL file.
    Records go to --out (JSONL) or stdout, in input order."""
    from mtpt.inference.inputs import read_rows

    parser = argparse.ArgumentParser(prog="mtpt predict", description=cmd_predict.__doc__)
    _model_arguments(parser)
    parser.add_argument("--input", required=True, help="CSV / TSV (header row) or JSONL file of rows: the task's "
                                                       "input fields, and `task` for runs with several tasks.")
    parser.add_argument("--format", choices=["csv", "tsv", "jsonl", "json"], default=None,
                        help="The input format (default: from the file's extension).")
    parser.add_argument("--columns", nargs="+", default=None,
                        help="Column names of a CSV / TSV file without a header row.")
    parser.add_argument("--out", default=None, help="JSONL file for the records (default: stdout).")
    args = parser.parse_args(argv)
    _check_model_arguments(args, parser)
    if not Path(args.input).is_file():
        raise MtptError(f"Input file not found: {args.input}")
    rows, where = read_rows(args.input, args.format, args.columns)  # before the model loads: bad input fails fast
    predictor = _load(args, parser)
    try:
        records = predictor.predict_prepared(predictor.prepare(rows, where=where), progress=True)
    finally:
        predictor.close()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.out is None:
        sys.stdout.write(text)
    else:
        from mtpt.atomic import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {len(records)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_serve(argv: list[str]) -> int:
    """Serve a run (or a backbone zero-shot) over HTTP: POST /predict, GET /tasks, GET /health. Requests of
    concurrent clients share batches, rows of different tasks included."""
    parser = argparse.ArgumentParser(prog="mtpt serve", description=cmd_serve.__doc__)
    _model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="Interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it).")
    parser.add_argument("--port", type=int, default=8000, help="Port (0: any free port, printed at start).")
    parser.add_argument("--max-wait-ms", type=float, default=10.0,
                        help="How long the first request of a batch waits for others to join it.")
    parser.add_argument("--max-rows", type=int, default=256, help="Most rows one request may send.")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="Largest request body.")
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from mtpt.inference.server import ServeLimits, create_app
    except ImportError as err:
        raise MtptError(f"`mtpt serve` needs the serve extra ({err.name} is missing): "
                        f"pip install 'mtpt[serve]'") from None
    predictor = _load(args, parser)
    limits = ServeLimits(max_wait_s=args.max_wait_ms / 1000, max_rows=args.max_rows,
                         max_body_bytes=args.max_body_bytes)
    uvicorn.run(create_app(predictor, limits), host=args.host, port=args.port, log_level="info")
    predictor.close()
    return 0


COMMANDS = {
    "predict": ("Predict labels (with every label's score) for the rows of a CSV/TSV/JSONL file with a run, or "
                "zero-shot with --backbone and --task.", cmd_predict),
    "serve": ("Serve a run (or a backbone zero-shot) as an HTTP JSON API; concurrent requests share batches.",
              cmd_serve),
}
