"""Checkpoints: identical round trip, atomic writes, no pickle."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from helpers import pt_model
from mtpt.errors import MtptError
from mtpt.training.checkpoint import load_method_state, load_trainer_state, read_meta, save_checkpoint


class ArbitraryObject:
    """Picklable, but not loadable without unpickling code."""


def test_round_trip_is_identical(tmp_path):
    model, _ = pt_model()
    save_checkpoint(tmp_path / "ck", model.method, {"method": "pt"}, trainer_state={"step": 3, "x": torch.ones(2)})
    other, _ = pt_model(seed=1)
    assert not torch.equal(other.method.prompt, model.method.prompt)
    meta = load_method_state(tmp_path / "ck", other.method)
    assert torch.equal(other.method.prompt, model.method.prompt)
    assert meta == {"method": "pt"}
    assert load_trainer_state(tmp_path / "ck")["step"] == 3


def only_the_current_version(folder):
    """``folder`` and, beside it, nothing but the version it links to (none for a plain folder)."""
    names = sorted(p.name for p in folder.parent.iterdir())
    current = [os.readlink(folder)] if folder.is_symlink() else []
    return names == sorted([folder.name, *current])


def test_overwrite_leaves_no_staging_folders(tmp_path):
    model, _ = pt_model()
    for _ in range(2):
        save_checkpoint(tmp_path / "ck", model.method, {"n": 1})
    assert only_the_current_version(tmp_path / "ck")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    model, _ = pt_model()
    save_checkpoint(tmp_path / "ck", model.method, {"version": 1})

    # an arbitrary object cannot be read back with weights_only=True: the write is checked by reading it back
    with pytest.raises(pickle.UnpicklingError, match="ArbitraryObject"):
        save_checkpoint(tmp_path / "ck", model.method, {"version": 2}, trainer_state={"bad": ArbitraryObject()})
    assert read_meta(tmp_path / "ck") == {"version": 1}
    assert only_the_current_version(tmp_path / "ck")


def test_a_checkpoint_of_another_shape_is_refused(tmp_path):
    model, _ = pt_model(length=4)
    save_checkpoint(tmp_path / "ck", model.method, {})
    other, _ = pt_model(length=6)
    with pytest.raises((MtptError, RuntimeError)):
        load_method_state(tmp_path / "ck", other.method)
