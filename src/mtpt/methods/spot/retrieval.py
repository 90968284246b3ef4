"""SPoT source retrieval (METHODS.md §2): the task embedding is the tuned prompt, compared by the cosine of the
token-averaged prompts; the most similar source initialises the target prompt.

The target prompt comes from a short PT run on the target task (the caller's job).
"""

from __future__ import annotations

from torch import Tensor

from mtpt.similarity import first_argmax, similarity_matrix

__all__ = ["best_source", "prompt_similarities"]


def prompt_similarities(target: Tensor, sources: Tensor, kind: str = "cosine") -> Tensor:
    """Similarity of the target prompt with each source prompt.

    Args:
        target: ``[L, d]`` target prompt.
        sources: ``[S, L, d]`` source prompts.
        kind: ``"cosine"`` (SPoT) or ``"dot"`` (the DTVG scaled dot product), see
            :func:`mtpt.similarity.similarity_matrix`.

    Returns:
        ``[S]`` in the prompts' dtype.
    """
    if target.dim() != 2:
        raise ValueError(f"target must be [L, d], got shape {tuple(target.shape)}")
    if sources.dim() != 3:
        raise ValueError(f"sources must be [S, L, d], got shape {tuple(sources.shape)}")
    return similarity_matrix(target.unsqueeze(0), sources, kind=kind)[0]


def best_source(target: Tensor, sources: Tensor, kind: str = "cosine") -> int:
    """Index of the most similar source prompt; ties go to the lowest index (as ``numpy.argmax``)."""
    similarities = prompt_similarities(target, sources, kind)
    if similarities.numel() == 0:
        raise ValueError("best_source needs at least one source prompt")
    return first_argmax(similarities)
