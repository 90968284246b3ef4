"""Every shipped run config parses, and its method section validates against the method's dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtpt.config import method_config, parse_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RUN_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if "library" not in p.parts and "bench" not in p.parts)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_run_config_loads(path):
    config = parse_run_config([str(path)])
    spec, options = method_config(config.method)
    assert spec.name == config.method["name"]
    assert config.tasks


def test_there_are_shipped_configs():
    assert RUN_CONFIGS


def test_help_lists_flags_as_typed_with_each_fields_docstring(capsys):
    """--help is generated from the config dataclasses: every flag as the user types it (no internal namespace
    prefix), each with the text documenting its field."""
    from mtpt.cli import main as cli_main

    assert cli_main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--cfg" not in out
    assert "--train.lr" in out and "--data.kshot KSHOT" in out
    assert "Train on k examples per class" in out  # DataConfig.kshot's docstring
    # the flags the help shows are the ones that parse
    assert parse_run_config(["--train.lr", "0.5", "--data.kshot", "4"]).train.lr == 0.5
