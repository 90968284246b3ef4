"""Shared test set-up: offline by construction, tiny models, small fixture tasks."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MTPT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real benchmark files; tests that need them are skipped where they are absent (end users)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (set MTPT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def device() -> torch.device:
    """The device of the tests marked ``device``: ``$MTPT_TEST_DEVICE`` (``cpu`` by default; ``scripts/gpu-check.sh``
    sets ``cuda`` and runs ``pytest -m device``)."""
    name = os.environ.get("MTPT_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"MTPT_TEST_DEVICE={name}, but this torch ({torch.__version__}) sees no GPU")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Converted real backbones are shared across tests; everything else a test writes goes to tmp_path.
    monkeypatch.setenv("MTPT_CACHE_DIR", os.environ.get("MTPT_TEST_CACHE_DIR", str(Path.home() / ".cache" / "mtpt")))


@pytest.fixture(scope="module")
def backbone():
    """A frozen tiny random Llama, shared by the tests of one module."""
    from mtpt.testing import tiny_backbone

    return tiny_backbone("llama")


@pytest.fixture(scope="module")
def tok(backbone):
    from mtpt.batching import Tokenizer

    return Tokenizer(backbone.tokenizer, max_input_tokens=64)


@pytest.fixture(scope="module")
def lib(tmp_path_factory, backbone) -> str:
    """A tiny source-prompt library over the fixture tasks (built once per session)."""
    from fixtures.library.tiny_tasks import shared_library

    return str(shared_library(tmp_path_factory, backbone))
