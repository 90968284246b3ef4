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


def test_yaml_overrides_apply_in_order_file_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 0.1, steps: 7}\ndata: {kshot: 8}\n", encoding="utf-8")
    config = parse_run_config([str(path), "--train.lr", "0.5"])
    assert (config.train.lr, config.train.steps, config.data.kshot) == (0.5, 7, 8)
    assert type(config.train).__name__ == "TrainConfig"


def test_a_bad_key_is_reported_with_where_it_came_from(tmp_path):
    from mtpt.errors import MtptError

    path = tmp_path / "run.yaml"
    path.write_text("train: {lr: 0.1, bogus: 3}\n", encoding="utf-8")
    with pytest.raises(MtptError, match=f"run configuration \\({path}\\).*bogus"):
        parse_run_config([str(path)])
    with pytest.raises(MtptError, match="\\(command line\\).*--train.lrr"):
        parse_run_config(["--train.lrr", "1"])
