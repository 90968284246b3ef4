"""Similarities between prompts or task vectors (pure tensor functions, no model).

SPoT's retrieval, DTVG's grouping and the library's similarity report all compare ``[L, d]`` prompts through their
token average: ``dot`` is the DTVG authors' scaled dot product ``(1/d) <mean_rows(X), mean_rows(Y)>``, ``cosine``
SPoT's cosine of the token-averaged vectors.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

SIMILARITY_KINDS = ("dot", "cosine")

__all__ = ["SIMILARITY_KINDS", "check_kind", "check_same_dtype", "first_argmax", "similarity_matrix",
           "similarity_of_means"]


def check_kind(kind: str) -> None:
    """Raise ``ValueError`` unless ``kind`` is one of :data:`SIMILARITY_KINDS`."""
    if kind not in SIMILARITY_KINDS:
        raise ValueError(f"similarity kind must be one of {SIMILARITY_KINDS}, got {kind!r}")


def similarity_of_means(means_a: Tensor, means_b: Tensor, kind: str) -> Tensor:
    """Pairwise similarity of token-averaged vectors: ``[Na, d] x [Nb, d] -> [Na, Nb]``."""
    check_kind(kind)
    if kind == "dot":
        # The authors' (m_a * m_b).mean(): a dot product divided by d.
        return means_a @ means_b.transpose(0, 1) / means_a.shape[-1]
    # Cosine as in torch.nn.functional.cosine_similarity: a zero vector has similarity 0 with everything.
    return F.normalize(means_a, dim=-1) @ F.normalize(means_b, dim=-1).transpose(0, 1)


def similarity_matrix(a: Tensor, b: Tensor, kind: str = "dot") -> Tensor:
    """Similarity of every prompt/vector in ``a`` with every one in ``b``.

    Args:
        a: ``[Na, L, d]``.
        b: ``[Nb, L, d]`` (same ``L`` and ``d`` as ``a``).
        kind: ``"dot"`` = ``(1/d) * <mean_rows(X), mean_rows(Y)>`` (DTVG authors' scaled dot product);
            ``"cosine"`` = cosine of the token-averaged vectors (SPoT).

    Returns:
        ``[Na, Nb]`` in the dtype of the inputs.
    """
    check_kind(kind)
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(f"expected a [Na, L, d] and b [Nb, L, d], got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b must share [L, d], got {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    check_same_dtype(a=a, b=b)
    return similarity_of_means(a.mean(dim=1), b.mean(dim=1), kind)


def first_argmax(values: Tensor) -> int:
    """Index of the first maximum of a 1-D tensor (ties -> lowest index), independent of backend tie rules."""
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"first_argmax needs a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    is_max = values == values.max()
    return int(is_max.nonzero()[0, 0])


def check_same_dtype(**tensors: Tensor) -> None:
    """Raise ``ValueError`` when the tensors have different dtypes (no silent casts)."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        raise ValueError(f"inputs must share one dtype (no silent casts), got {dtypes}")
