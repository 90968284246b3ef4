"""Converting a GGUF alias into the cache: processes started together convert it once and all load it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mtpt.backbones as backbones


def test_concurrent_first_loads_convert_an_alias_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MTPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(
        backbones.ALIASES, "fake", backbones._GgufAlias(package="pytest", install_hint="-", locate=lambda c: c / "x.gguf")
    )
    conversions = []

    def slow_convert(gguf_file: Path, target: Path) -> None:
        conversions.append(gguf_file)
        time.sleep(0.3)  # long enough for the other caller to reach the conversion too, were it not serialised
        target.mkdir()
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(backbones, "_convert_gguf", slow_convert)
    results, errors = [], []

    def load() -> None:
        try:
            results.append(backbones._converted_alias("fake"))
        except Exception as err:  # noqa: BLE001 - reported through the assertion below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(conversions) == 1
    assert results == [tmp_path / "backbones" / "fake"] * 3
