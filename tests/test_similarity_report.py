"""``mtpt similarity``: CSV matrices and real PNG heatmaps, cosine and DTVG dot, with and without a target."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from fixtures.library.tiny_tasks import SOURCES, TARGET, shared_library
from mtpt.cli import main as cli_main
from mtpt.errors import MtptError
from mtpt.library import SourceLibrary
from mtpt.library.access import read_prompt
from mtpt.library.similarity import similarity_report
from mtpt.similarity import similarity_matrix
from mtpt.prompt_io import save_prompt
from mtpt.testing import tiny_backbone

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    return shared_library(tmp_path_factory, tiny_backbone("llama"))


def read_csv(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0][1:], [r[0] for r in rows[1:]], torch.tensor([[float(v) for v in r[1:]] for r in rows[1:]])


def test_report_writes_csv_and_png_for_both_similarities(tmp_path, lib):
    library = SourceLibrary.open(lib)
    target = library.prompt(TARGET)
    written = similarity_report(library, tmp_path / "out", target=target, tasks=list(SOURCES), target_name=TARGET)
    expected = {f"{what}_{kind}.{ext}" for kind in ("cosine", "dot")
                for what, ext in (("sources", "csv"), ("target", "csv"), ("heatmap", "png"))}
    assert set(written) == expected
    for name in expected:
        assert (tmp_path / "out" / name).exists()
    vectors = library.task_vectors(list(SOURCES))
    for kind in ("cosine", "dot"):
        cols, rows, values = read_csv(tmp_path / "out" / f"sources_{kind}.csv")
        assert cols == rows == list(SOURCES)
        assert torch.allclose(values, similarity_matrix(vectors, vectors, kind), rtol=1e-4, atol=1e-7)
        png = (tmp_path / "out" / f"heatmap_{kind}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 1000
        cols, rows, values = read_csv(tmp_path / "out" / f"target_{kind}.csv")
        assert rows == [TARGET] and cols == list(SOURCES)
        tau = library.task_vector(TARGET).unsqueeze(0)
        assert torch.allclose(values, similarity_matrix(tau, vectors, kind), rtol=1e-4, atol=1e-7)
    _, _, cosine = read_csv(tmp_path / "out" / "sources_cosine.csv")
    assert torch.allclose(cosine.diagonal(), torch.ones(3), atol=1e-5)


def test_report_of_prompts_differs_from_task_vectors(tmp_path, lib):
    library = SourceLibrary.open(lib)
    similarity_report(library, tmp_path / "p", of="prompts")
    similarity_report(library, tmp_path / "v")
    prompts = library.prompts(library.tasks)
    _, _, values = read_csv(tmp_path / "p" / "sources_cosine.csv")
    assert torch.allclose(values, similarity_matrix(prompts, prompts, "cosine"), rtol=1e-4, atol=1e-7)
    assert not torch.allclose(values, read_csv(tmp_path / "v" / "sources_cosine.csv")[2])
    assert not (tmp_path / "p" / "target_cosine.csv").exists()


def test_cli_reads_the_target_from_a_run_folder(tmp_path, lib, capsys):
    run = lib / "_runs" / TARGET / "seed-42"
    assert torch.equal(read_prompt(run), SourceLibrary.open(lib).prompt(TARGET))
    code = cli_main(["similarity", str(lib), "--target", str(run), "--out", str(tmp_path / "cli")])
    assert code == 0
    assert (tmp_path / "cli" / "target_dot.csv").exists()
    assert (tmp_path / "cli" / "heatmap_dot.png").read_bytes().startswith(PNG_MAGIC)
    assert "heatmap_cosine.png" in capsys.readouterr().out


def test_a_target_of_another_shape_is_refused(tmp_path, lib):
    save_prompt(torch.zeros(7, 32), tmp_path / "wrong.safetensors")
    code = cli_main(["similarity", str(lib), "--target", str(tmp_path / "wrong.safetensors"), "--out", str(tmp_path)])
    assert code == 1
    with pytest.raises(MtptError, match="shape"):
        similarity_report(SourceLibrary.open(lib), tmp_path, target=torch.zeros(7, 32))
