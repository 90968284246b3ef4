"""``precision: auto`` and the emulated-bf16 warning (no model needed)."""

from __future__ import annotations

import warnings

import pytest

from mtpt import precision


@pytest.fixture
def hardware(monkeypatch):
    """Pretend the machine has (True) or lacks (False) native bf16."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "native_bf16", lambda: value)
        precision._warn_emulated_bf16.cache_clear()

    return set_native


def test_auto_takes_bf16_only_where_it_is_native(hardware):
    hardware(True)
    assert precision.resolve_precision("auto") == "bf16"
    hardware(False)
    assert precision.resolve_precision("auto") == "no"


def test_explicit_bf16_is_kept_but_warned_about_when_emulated(hardware):
    hardware(False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert precision.resolve_precision("bf16") == "bf16"
    hardware(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16") == "bf16"
        assert precision.resolve_precision("no") == "no"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8")


def test_native_bf16_answers_on_this_machine():
    assert isinstance(precision.native_bf16(), bool)


def test_trainer_config_accepts_auto():
    from mtpt.config import TrainConfig

    assert TrainConfig().precision == "auto"


def test_one_process_can_make_accelerators_of_different_precisions():
    """Accelerate refuses a second precision in a process; a benchmark or a test session trains several runs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # explicit bf16 warns where it is emulated
        assert precision.make_accelerator("no").mixed_precision == "no"
        assert precision.make_accelerator("bf16").mixed_precision == "bf16"
        assert precision.make_accelerator("bf16").mixed_precision == "bf16"
    assert precision.make_accelerator("no").mixed_precision == "no"


@pytest.fixture
def process_group(tmp_path):
    """Start a one-process gloo group, as `accelerate launch` does for each rank; tear it down if a test left it."""
    import torch.distributed as dist

    def start() -> None:
        dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)

    yield start
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_successful_command_destroys_the_process_group_it_started(monkeypatch, process_group):
    """Left to interpreter teardown, gloo's threads can abort a process whose run succeeded (SIGABRT)."""
    import torch.distributed as dist

    from mtpt import cli

    def run(argv):
        process_group()
        return 0

    monkeypatch.setitem(cli.COMMANDS, "fake-run", ("a run that started a process group", run))
    assert cli.main(["fake-run"]) == 0
    assert not dist.is_initialized()


def test_a_failed_command_leaves_the_process_group_alone(monkeypatch, process_group):
    """After an error another rank may still wait in a collective, where destroying the group can hang."""
    import torch.distributed as dist

    from mtpt import cli
    from mtpt.errors import MtptError

    def run(argv):
        process_group()
        raise MtptError("bad input")

    monkeypatch.setitem(cli.COMMANDS, "fake-run", ("a run that fails", run))
    assert cli.main(["fake-run"]) == 1
    assert dist.is_initialized()
