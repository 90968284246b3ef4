"""SPoT retrieval (METHODS.md §2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtpt.methods.spot.retrieval import best_source, prompt_similarities


def test_similarities_are_cosines_of_token_means():
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    sources = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    expected = torch.stack([F.cosine_similarity(target.mean(0), s.mean(0), dim=0) for s in sources])
    sims = prompt_similarities(target, sources)
    assert sims.shape == (3,) and sims.dtype == torch.float64
    torch.testing.assert_close(sims, expected)


def test_picks_the_argmax():
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    sources = torch.tensor(
        [
            [[10.0, 10.0], [10.0, 10.0]],  # cosine .707, largest dot product
            [[1.0, 0.1], [1.0, -0.1]],  # mean [1, 0]: cosine 1
            [[-1.0, 0.0], [-1.0, 0.0]],  # cosine -1
        ]
    )
    assert best_source(target, sources) == 1
    assert best_source(target, sources, kind="dot") == 0  # a dot product would prefer the large prompt


def test_ties_go_to_lowest_index():
    target = torch.tensor([[1.0, 0.0]])
    sources = torch.tensor([[[0.0, 1.0]], [[2.0, 0.0]], [[3.0, 0.0]]])  # sources 1 and 2 both have cosine 1
    assert best_source(target, sources) == 1


def test_validation():
    with pytest.raises(ValueError, match="at least one"):
        best_source(torch.zeros(2, 3), torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="target"):
        prompt_similarities(torch.zeros(3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="share"):
        prompt_similarities(torch.zeros(2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="similarity kind"):
        prompt_similarities(torch.zeros(2, 3), torch.zeros(1, 2, 3), kind="l1")


def test_with_one_shared_initial_prompt_the_default_compares_what_each_prompt_learned():
    """Every library prompt starts at one P_init, which dominates the prompts' cosine: a short target run (little
    movement) looks most like the source that moved least. The default compares the task vectors instead."""
    from mtpt.methods.spot.config import SpotConfig

    gen = torch.Generator().manual_seed(0)
    init = torch.randn(4, 32, generator=gen, dtype=torch.float64)
    related, unrelated = torch.randn(2, 32, generator=gen, dtype=torch.float64)
    target = init + 0.3 * related  # a short run on the target moves a little, in the related direction
    sources = torch.stack([init + 3.0 * related + torch.randn(4, 32, generator=gen, dtype=torch.float64),  # moved far
                           init + 0.5 * unrelated])  # an unrelated source that moved little
    assert best_source(target, sources) == 1  # the prompts' cosine (the SPoT paper's): the unrelated one
    assert best_source(target - init, sources - init) == 0  # the task vectors': the related one
    assert SpotConfig().compare == "task_vectors"


class _Library:
    """What :func:`retrieve` reads of a source library: the prompts and the shared initial prompt."""

    def __init__(self, init, prompts):
        self.init, self.stacked = init, prompts
        self.prompt_length, self.hidden_size = init.shape

    def prompts(self, sources, seed):
        return self.stacked

    def init_prompt(self):
        return self.init


def _degenerate_case():
    """The case above (one shared P_init; the unrelated source moved least) as a library."""
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(4, 32, generator=gen, dtype=torch.float64)
    related, unrelated = torch.randn(2, 32, generator=gen, dtype=torch.float64)
    sources = torch.stack([init + 3.0 * related + torch.randn(4, 32, generator=gen, dtype=torch.float64),
                           init + 0.5 * unrelated])
    return _Library(init, sources), init + 0.3 * related


def test_the_papers_retrieval_warns_when_the_shared_initial_prompt_decides_it():
    from mtpt.methods.spot.config import SpotConfig
    from mtpt.methods.spot.module import SpotRetrievalWarning, retrieve

    library, target = _degenerate_case()
    with pytest.warns(SpotRetrievalWarning, match="retrieved 'unrelated'.*would retrieve 'related'"):
        record = retrieve(library, ["related", "unrelated"], target, SpotConfig(compare="prompts"))
    assert record["source"] == "unrelated" and record["task_vectors_source"] == "related"


def test_the_default_retrieval_neither_warns_nor_records_a_second_pick(recwarn):
    from mtpt.methods.spot.config import SpotConfig
    from mtpt.methods.spot.module import retrieve

    library, target = _degenerate_case()
    record = retrieve(library, ["related", "unrelated"], target, SpotConfig())
    assert record["source"] == "related" and "task_vectors_source" not in record
    assert not recwarn.list
