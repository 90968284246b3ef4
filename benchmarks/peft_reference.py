"""Prompt tuning of one k-shot task the way a PEFT user does it: the reference side of ``mtpt bench e2e``.

What it does is what PEFT's documentation shows for a causal LM, written out as a plain PyTorch loop:
``PromptTuningConfig`` + ``get_peft_model``, batches of ``input_ids`` / ``attention_mask`` / ``labels`` (the target
tokens, -100 elsewhere), ``loss = model(**batch).loss`` over logits for every position and the whole vocabulary,
AdamW with transformers' linear warm-up schedule; validation every ``--eval-every`` steps keeping the best prompt;
then rank scoring of the test set: batches of examples, one forward per label word, each (example, label word)
scored by the summed log-probability of the label's tokens.

It imports mtpt only to read the task's splits (``mtpt.tasks``, so both sides score the very same examples) and to
load the backbone (``mtpt.backbones``, the same weights); training and scoring use PEFT, transformers and PyTorch
only. Run alone: ``python benchmarks/peft_reference.py --task glue-sst2 --out ref-out`` (writes
``timings.json``; the flags are those of ``mtpt bench e2e``).

Kept equal to mtpt's run so that both solve the same learning problem (and their accuracies can be compared):
the initial prompt (the same 20 vocabulary rows, drawn as mtpt's ``sample_vocab`` draws them: a permutation of
the first 5,000 rows seeded by ``--seed``), the example order (the same seeded permutation per epoch as mtpt's
sampler, so every step sees the same 8 examples), AdamW without weight decay, the schedule, clipping at 1.0 (mtpt's
default ``max_grad_norm``; PEFT's examples do not clip), the loss (mean over the target tokens, EOS appended to
the target as mtpt does), the sum of log-probabilities for scoring, and "best" = strictly better validation
accuracy. What differs, by design (what a user would do): logits over every position in training and scoring,
one forward per label word, test examples in their file order (mtpt sorts them by length), the best prompt kept
in memory (mtpt writes checkpoints), truncation of over-long inputs keeps their beginning (mtpt keeps the end;
SST-2's inputs never reach 256 tokens), and PEFT puts the prompt before the padding (here every row is padded on
the right, so positions are the same as mtpt's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STARTED = time.perf_counter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

IGNORE = -100
VOCAB_SAMPLE_ROWS = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--task", default="glue-sst2")
    parser.add_argument("--kshot", type=int, default=16)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--precision", default="no", choices=["no", "bf16"])
    parser.add_argument("--max-input-tokens", type=int, default=256)
    parser.add_argument("--max-eval-examples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def load_splits(args):
    """The task's train, validation and test examples, read through mtpt's task layer (identical splits)."""
    from mtpt.tasks import get_task

    task = get_task(args.task)
    train = task.examples("train", kshot=args.kshot, seed=args.seed)
    validation = task.examples("validation", kshot=args.kshot, seed=args.seed, max_examples=args.max_eval_examples)
    test = task.examples("test", max_examples=args.max_eval_examples)
    return train, validation, test


def example_order(n: int, seed: int, count: int) -> list[int]:
    """The first ``count`` example indices: epochs of seeded permutations, as mtpt's sampler draws one task."""
    order: list[int] = []
    epoch = 0
    while len(order) < count:
        generator = torch.Generator().manual_seed(seed * 7919 + epoch)
        order += torch.randperm(n, generator=generator).tolist()
        epoch += 1
    return order[:count]


def initial_prompt(embeddings: torch.nn.Embedding, length: int, seed: int) -> torch.Tensor:
    """``length`` distinct rows of the first 5,000 of the vocabulary, drawn with ``seed``."""
    rows = min(VOCAB_SAMPLE_ROWS, embeddings.num_embeddings)
    ids = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))[:length]
    with torch.no_grad():
        return embeddings(ids.to(embeddings.weight.device)).float().clone()


class Encoder:
    def __init__(self, tokenizer, max_input_tokens: int):
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def text(self, text: str) -> list[int]:
        return self.tokenizer(text, truncation=True, max_length=self.max_input_tokens)["input_ids"]

    def label(self, label: str, eos: bool) -> list[int]:
        ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id] if eos and self.tokenizer.eos_token_id is not None else ids

    def batch(self, rows: list[tuple[list[int], list[int]]], device) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (the second part of each row)."""
        width = max(len(a) + len(b) for a, b in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE)
        for i, (a, b) in enumerate(rows):
            ids[i, :len(a) + len(b)] = torch.tensor(a + b)
            mask[i, :len(a) + len(b)] = 1
            labels[i, len(a):len(a) + len(b)] = torch.tensor(b)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def autocast(precision: str, device):
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return torch.autocast(torch.device(device).type, enabled=False)


@torch.no_grad()
def accuracy(model, encoder: Encoder, examples, batch_size: int, precision: str, device) -> float:
    """Rank scoring: per batch of examples, one forward per label word; the most likely label is the answer."""
    model.eval()
    virtual = model.peft_config["default"].num_virtual_tokens
    correct = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        texts = [encoder.text(ex.text) for ex in chunk]
        scores = torch.full((len(chunk), max(len(ex.choices) for ex in chunk)), float("-inf"))
        for c in range(scores.shape[1]):
            rows = [(text, encoder.label(ex.choices[c], eos=False)) for text, ex in zip(texts, chunk)
                    if c < len(ex.choices)]
            batch = encoder.batch(rows, device)
            with autocast(precision, device):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            # logits include the virtual tokens; position p predicts token p + 1
            log_probs = F.log_softmax(logits[:, virtual:-1].float(), dim=-1)
            labels = batch["labels"][:, 1:]
            picked = log_probs.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total = (picked * (labels != IGNORE)).sum(dim=1).cpu()
            which = [i for i, ex in enumerate(chunk) if c < len(ex.choices)]
            scores[which, c] = total
        predictions = scores.argmax(dim=1).tolist()
        correct += sum(int(p == ex.label) for p, ex in zip(predictions, chunk))
    model.train()
    return 100.0 * correct / len(examples)


def run(args: argparse.Namespace) -> dict:
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from mtpt.backbones import load_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = load_backbone(args.backbone)
    train, validation, test = load_splits(args)
    model = get_peft_model(backbone.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                              num_virtual_tokens=args.prompt_length)).to(device)
    prompt = model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        prompt.copy_(initial_prompt(backbone.model.get_input_embeddings(), args.prompt_length, args.seed))
    encoder = Encoder(backbone.tokenizer, args.max_input_tokens)
    rows = [(encoder.text(ex.text), encoder.label(ex.target, eos=True)) for ex in train]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)
    order = example_order(len(rows), args.seed, args.steps * args.batch_size)
    ready = time.perf_counter()

    best, best_step, best_prompt, validation_s, passes = None, 0, prompt.detach().clone(), 0.0, 0
    losses: list[float] = []
    model.train()
    for step in range(args.steps):
        batch = encoder.batch([rows[i] for i in order[step * args.batch_size:(step + 1) * args.batch_size]], device)
        with autocast(args.precision, device):
            loss = model(**batch).loss
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            start = time.perf_counter()
            value = accuracy(model, encoder, validation, args.eval_batch_size, args.precision, device)
            validation_s += time.perf_counter() - start
            passes += 1
            if best is None or value > best:
                best, best_step, best_prompt = value, step + 1, prompt.detach().clone()
    trained = time.perf_counter()
    with torch.no_grad():
        prompt.copy_(best_prompt)
    test_accuracy = accuracy(model, encoder, test, args.eval_batch_size, args.precision, device)
    finished = time.perf_counter()
    return {
        "side": "reference",
        "steps": trained - ready - validation_s,
        "validation": validation_s,
        "test": finished - trained,
        "inner_setup": ready - STARTED,
        "inner_total": finished - STARTED,
        "validation_passes": passes,
        "best_step": best_step,
        "best_validation": best,
        "test_accuracy": test_accuracy,
        "train_examples": len(train),
        "validation_examples": len(validation),
        "test_examples": len(test),
        "threads": torch.get_num_threads(),
        "losses": losses,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timings = run(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
