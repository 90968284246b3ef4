"""MPT prompt composition, distillation loss and target initialisation (METHODS.md §4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtpt.methods.mpt.distillation import distillation_loss, init_task_factors, mpt_task_prompts

# ----------------------------------------------------------------------------------------------------------------
# Composition
# ----------------------------------------------------------------------------------------------------------------


def test_hadamard_composition_hand_case():
    shared = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    u = torch.tensor([[[1.0], [2.0]], [[0.0], [1.0]]])  # K = 2, L = 2, r = 1
    v = torch.tensor([[[1.0, -1.0]], [[5.0, 1.0]]])  # K = 2, r = 1, d = 2
    # W_0 = [[1, -1], [2, -2]] -> P_0 = [[1, -2], [6, -8]];  W_1 = [[0, 0], [5, 1]] -> P_1 = [[0, 0], [15, 4]]
    prompts = mpt_task_prompts(shared, u, v, torch.tensor([0, 1]))
    torch.testing.assert_close(prompts[0], torch.tensor([[1.0, -2.0], [6.0, -8.0]]))
    torch.testing.assert_close(prompts[1], torch.tensor([[0.0, 0.0], [15.0, 4.0]]))


def test_per_example_task_selection():
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 6, generator=gen)
    u, v = torch.randn(3, 4, 2, generator=gen), torch.randn(3, 2, 6, generator=gen)
    task_ids = torch.tensor([2, 0, 2, 1, 0])
    prompts = mpt_task_prompts(shared, u, v, task_ids)
    assert prompts.shape == (5, 4, 6)
    for b, k in enumerate(task_ids.tolist()):
        torch.testing.assert_close(prompts[b], shared * (u[k] @ v[k]))


def test_composition_gradients_and_validation():
    shared = torch.randn(4, 6, requires_grad=True)
    u = torch.randn(3, 4, 1, requires_grad=True)
    v = torch.randn(3, 1, 6, requires_grad=True)
    mpt_task_prompts(shared, u, v, torch.tensor([1])).sum().backward()
    assert shared.grad.abs().sum() > 0 and u.grad[1].abs().sum() > 0
    assert torch.all(u.grad[[0, 2]] == 0) and torch.all(v.grad[[0, 2]] == 0)
    with pytest.raises(ValueError, match="task_ids"):
        mpt_task_prompts(shared, u, v, torch.tensor([3]))
    with pytest.raises(ValueError, match="task_ids"):
        mpt_task_prompts(shared, u, v, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="shared"):
        mpt_task_prompts(shared[:3], u, v, torch.tensor([0]))
    with pytest.raises(ValueError, match="u"):
        mpt_task_prompts(shared, u, v[:2], torch.tensor([0]))


# ----------------------------------------------------------------------------------------------------------------
# Distillation loss
# ----------------------------------------------------------------------------------------------------------------


def _outputs(seed=0, batch=2, tokens=3, vocab=5, hidden=4, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, vocab, generator=gen, dtype=dtype), torch.randn(
        batch, tokens, hidden, generator=gen, dtype=dtype
    )


def test_loss_is_zero_when_student_equals_teacher():
    logits, hidden = _outputs()
    losses = distillation_loss(logits, logits.clone(), hidden, hidden.clone())
    assert losses["kl"].abs() < 1e-12 and losses["mse"] == 0


def test_loss_is_positive_otherwise():
    logits, hidden = _outputs(0)
    other_logits, other_hidden = _outputs(1)
    losses = distillation_loss(logits, other_logits, hidden, other_hidden)
    assert losses["kl"] > 0 and losses["mse"] > 0
    # Each term vanishes on its own when only the other input differs.
    assert distillation_loss(logits, logits, hidden, other_hidden)["kl"].abs() < 1e-12
    assert distillation_loss(logits, other_logits, hidden, hidden)["mse"] == 0


def test_loss_values_match_definition():
    student_logits, student_hidden = _outputs(0)
    teacher_logits, teacher_hidden = _outputs(1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    losses = distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden, mask, temperature=2.0)
    kls, sq = [], []
    for b, t in mask.nonzero().tolist():
        p_teacher = F.softmax(teacher_logits[b, t] / 2.0, dim=-1)
        p_student = F.softmax(student_logits[b, t] / 2.0, dim=-1)
        kls.append((p_teacher * (p_teacher.log() - p_student.log())).sum() * 4.0)
        sq.append(((student_hidden[b, t] - teacher_hidden[b, t]) ** 2).mean())
    torch.testing.assert_close(losses["kl"], torch.stack(kls).mean())
    torch.testing.assert_close(losses["mse"], torch.stack(sq).mean())


def test_mask_excludes_positions():
    student_logits, student_hidden = _outputs(0)
    teacher_logits, teacher_hidden = student_logits.clone(), student_hidden.clone()
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    teacher_logits[:, 2] += torch.randn(2, 5, dtype=torch.float64) * 10  # differences only where masked
    teacher_hidden[:, 2] += 10
    masked = distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden, mask.bool())
    assert masked["kl"].abs() < 1e-12 and masked["mse"] == 0
    unmasked = distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden)
    assert unmasked["kl"] > 0 and unmasked["mse"] > 0
    with pytest.raises(ValueError, match="no position"):
        distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask"):
        distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden, torch.ones(2, 4))


def test_gradients_flow_to_student_only():
    student_logits, student_hidden = (x.requires_grad_() for x in _outputs(0))
    teacher_logits, teacher_hidden = (x.requires_grad_() for x in _outputs(1))
    losses = distillation_loss(student_logits, teacher_logits, student_hidden, teacher_hidden)
    (losses["kl"] + losses["mse"]).backward()
    assert student_logits.grad.abs().sum() > 0 and student_hidden.grad.abs().sum() > 0
    assert teacher_logits.grad is None and teacher_hidden.grad is None


def test_distillation_validation():
    logits, hidden = _outputs()
    with pytest.raises(ValueError, match="logits shapes"):
        distillation_loss(logits, logits[..., :4], hidden, hidden)
    with pytest.raises(ValueError, match="hidden shapes"):
        distillation_loss(logits, logits, hidden, hidden[..., :3])
    with pytest.raises(ValueError, match="leading dims"):
        distillation_loss(logits, logits, hidden[:, :2], hidden[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(logits, logits, hidden, hidden, temperature=0.0)


def test_distillation_keeps_dtype():
    logits, hidden = _outputs(dtype=torch.float32)
    losses = distillation_loss(logits, logits + 1, hidden, hidden + 1)
    assert losses["kl"].dtype == losses["mse"].dtype == torch.float32


def test_normalized_hidden_distance_ignores_the_activation_scale():
    logits, student = _outputs(0)
    _, teacher = _outputs(1)
    raw = distillation_loss(logits, logits, student, teacher)["mse"]
    normalized = distillation_loss(logits, logits, student, teacher, hidden_distance="normalized_mse")["mse"]
    # Scaling and shifting both models' hidden states (a backbone with larger activations) multiplies the raw
    # term by the square of the scale and leaves the normalized one unchanged.
    scaled = distillation_loss(logits, logits, 30 * student + 5, 30 * teacher - 2, hidden_distance="normalized_mse")
    torch.testing.assert_close(scaled["mse"], normalized, rtol=1e-3, atol=0)  # up to layer norm's eps
    torch.testing.assert_close(distillation_loss(logits, logits, 30 * student, 30 * teacher)["mse"], 900 * raw)
    # Per position it is 2 (1 - Pearson r) of the two hidden vectors (population statistics, as layer norm uses).
    pearson = [torch.corrcoef(torch.stack([student[b, t], teacher[b, t]]))[0, 1]
               for b in range(student.shape[0]) for t in range(student.shape[1])]
    torch.testing.assert_close(normalized, (2 * (1 - torch.stack(pearson))).mean(), rtol=1e-4, atol=1e-4)
    assert distillation_loss(logits, logits, student, 3 * student + 1, hidden_distance="normalized_mse")["mse"] < 1e-8
    with pytest.raises(ValueError, match="hidden_distance"):
        distillation_loss(logits, logits, student, teacher, hidden_distance="cosine")


# ----------------------------------------------------------------------------------------------------------------
# Target initialisation
# ----------------------------------------------------------------------------------------------------------------


def _source_factors():
    u = torch.arange(12.0).reshape(3, 4, 1)
    v = torch.arange(18.0).reshape(3, 1, 6)
    return u, v


def test_init_mean():
    u_sources, v_sources = _source_factors()
    u, v = init_task_factors(u_sources, v_sources, "mean")
    torch.testing.assert_close(u, u_sources.mean(dim=0))
    torch.testing.assert_close(v, v_sources.mean(dim=0))
    assert u.shape == (4, 1) and v.shape == (1, 6)


def test_init_source_is_a_copy():
    u_sources, v_sources = _source_factors()
    u, v = init_task_factors(u_sources, v_sources, "source", source_index=2)
    torch.testing.assert_close(u, u_sources[2])
    torch.testing.assert_close(v, v_sources[2])
    u += 1
    assert not torch.equal(u, u_sources[2])  # not a view into the sources
    with pytest.raises(ValueError, match="source_index"):
        init_task_factors(u_sources, v_sources, "source")
    with pytest.raises(ValueError, match="source_index"):
        init_task_factors(u_sources, v_sources, "source", source_index=3)


def test_init_random():
    u_sources, v_sources = _source_factors()
    u1, v1 = init_task_factors(u_sources, v_sources, "random", generator=torch.Generator().manual_seed(0))
    u2, v2 = init_task_factors(u_sources, v_sources, "random", generator=torch.Generator().manual_seed(0))
    assert u1.shape == (4, 1) and v1.shape == (1, 6)
    assert torch.equal(u1, u2) and torch.equal(v1, v2)  # reproducible with a generator
    big_u, _ = init_task_factors(torch.zeros(1, 100, 100), torch.zeros(1, 100, 3), "random")
    assert abs(big_u.std().item() - 0.02) < 0.002


def test_init_validation():
    u_sources, v_sources = _source_factors()
    with pytest.raises(ValueError, match="mode"):
        init_task_factors(u_sources, v_sources, "median")
    with pytest.raises(ValueError, match="at least one source"):
        init_task_factors(u_sources[:0], v_sources[:0], "mean")
    with pytest.raises(ValueError, match="u"):
        init_task_factors(u_sources, v_sources[:2])
