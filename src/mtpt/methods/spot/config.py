"""Configuration of SPoT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtpt.checks import check_lr, check_range
from mtpt.config import path_option


@dataclass
class SpotConfig:
    """SPoT (Vu et al. 2022): start the target prompt from a source prompt of a library, then prompt-tune it.

    retrieve: the source most similar to a target prompt (cosine of the token-averaged task vectors by default,
    of the prompts themselves with compare: prompts);
    the target prompt is target_prompt when given, else a short PT run on this run's tasks from the library's
    initial prompt, written to <output_dir>/retrieval/ (reused when the run is resumed or rebuilt).
    generic: the library's mixture prompt. fixed: the prompt of `source`.
    """

    source_library: str = path_option()
    """Source-prompt library folder (built by `mtpt train-source`)."""
    mode: Literal["retrieve", "generic", "fixed"] = "retrieve"
    """retrieve (most similar source), generic (mixture-of-sources prompt) or fixed (the prompt of `source`)."""
    sources: list[str] = field(default_factory=list)
    """Candidate sources for retrieve; empty = every library task that is not a task of this run."""
    source: str = ""
    """The source task for mode: fixed."""
    source_seed: int | None = None
    """Which seed's library entries; null = per task, the seed with the best validation metric."""
    skip_unlearned: bool = False
    """Leave out library sources whose entry did not learn (`learned: false` in the manifest: their validation score
    never beat a constant answer); they are warned about either way."""
    target_prompt: str = path_option()
    """retrieve: a prompt file, export folder or finished run of the target (trained from the library's initial
    prompt); empty = run a short PT on the target into <output_dir>/retrieval/."""
    retrieval_steps: int = 50
    """Steps of the internal retrieval PT run (mode retrieve without target_prompt)."""
    retrieval_lr: float | None = None
    """Learning rate of the retrieval run; null = the run's train.lr."""
    similarity: Literal["cosine", "dot"] = "cosine"
    """cosine (SPoT) or DTVG's scaled dot product of the token-averaged prompts."""
    compare: Literal["prompts", "task_vectors"] = "task_vectors"
    """task_vectors: compare what each prompt learned (prompt minus the library's shared initial prompt); prompts:
    compare the tuned prompts themselves (the SPoT paper's task embedding). Every library prompt starts from one
    P_init, which dominates the prompts' cosine: the source whose prompt moved least looks most similar to any
    short target run (on the issue-29 check, ag_news's prompt was retrieved for CR over SST-2's on all three
    seeds, 0.65 against 0.64), so the default compares the task vectors. With prompts, a retrieval that the task
    vectors would answer differently warns and records both picks."""

    def __post_init__(self) -> None:
        check_range("method.retrieval_steps", self.retrieval_steps, at_least=1)
        check_lr("method.retrieval_lr", self.retrieval_lr, optional=True)
