"""The quality benchmark's v2 protocol on tiny models: phases, the learning-rate search, the gates, per-section
seeds, every row on the same test examples, best and last checkpoints, paired comparisons and their independent
recomputation."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import toy_task

from mtpt.bench.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def bench(*argv: str) -> int:
    return COMMANDS["bench"][1](list(argv))


def recompute_module():
    spec = importlib.util.spec_from_file_location("recompute_comparisons", REPO / "benchmarks" / "recompute_comparisons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the paired comparison (a pure function) ------------------------------------------------------------------------
def test_paired_comparison_counts_tests_and_bootstraps_the_shared_cells():
    import numpy as np
    from scipy.stats import binomtest

    from mtpt.bench.paired import paired_comparison

    row = {("a", 1): 60.0, ("a", 2): 55.0, ("b", 1): 70.0, ("b", 2): 50.0, ("c", 1): 99.0}
    base = {("a", 1): 50.0, ("a", 2): 55.0, ("b", 1): 65.0, ("b", 2): 52.0, ("d", 1): 0.0}
    result = paired_comparison(row, base, resamples=500, seed=3)
    assert (result.cells, result.wins, result.losses) == (4, 2, 1)  # ("c", 1) and ("d", 1) are not shared; a tie
    assert result.mean == pytest.approx((10 + 0 + 5 - 2) / 4)
    assert result.p == pytest.approx(binomtest(2, 3).pvalue)
    # the documented resampling, by hand: differences in (target, seed) order, default_rng(seed), percentiles
    diffs = np.array([10.0, 0.0, 5.0, -2.0])
    means = diffs[np.random.default_rng(3).integers(0, 4, size=(500, 4))].mean(axis=1)
    assert (result.ci_low, result.ci_high) == tuple(np.percentile(means, [2.5, 97.5]))
    assert result.ci_low <= result.mean <= result.ci_high
    assert paired_comparison(row, base, resamples=500, seed=3) == result  # seeded: the same interval every time
    assert paired_comparison(row, base, resamples=500, seed=4) != result
    single = paired_comparison({("a", 1): 1.0}, {("a", 1): 1.0})
    assert (single.cells, single.wins, single.losses, single.p, single.ci_low) == (1, 0, 0, 1.0, None)
    assert paired_comparison(row, {("z", 1): 1.0}) is None


def test_comparison_plan_and_groups(tmp_path):
    from mtpt.bench.quality_compare import compare_rows, comparison_plan
    from mtpt.bench.quality_config import ComparisonSection, QualityConfig
    from mtpt.errors import MtptError

    methods = {"zero_shot": {"name": "zero_shot"}, "pt": {"name": "pt"}, "spot": {"name": "spot"},
               "dtvg": {"name": "dtvg"}, "pt_unseen_data": {"name": "pt", "targets": ["src"]}}
    config = QualityConfig(methods=methods, comparisons=ComparisonSection(
        versus_baseline=True, pairs=[["dtvg", "spot"], ["spot", "pt"]], controls=["ctrl"], bootstrap_resamples=50))
    # every main-table row against the baseline (not the rows with their own targets), then the pairs, no repeats
    assert comparison_plan(config) == [("zero_shot", "pt"), ("spot", "pt"), ("dtvg", "pt"), ("dtvg", "spot")]
    rows = [{"method": m, "task": t, "scores": {1: s, 2: s + d}} for m, t, s, d in
            [("pt", "rel", 50, 0), ("pt", "ctrl", 50, 0), ("dtvg", "rel", 60, 2), ("dtvg", "ctrl", 40, 0)]]
    found = {(c["row"], c["baseline"], c["group"]): c for c in compare_rows(config, rows)}
    assert set(found) == {("dtvg", "pt", "related"), ("dtvg", "pt", "control")}
    assert found["dtvg", "pt", "related"]["mean"] == 11 and found["dtvg", "pt", "related"]["targets"] == ["rel"]
    assert found["dtvg", "pt", "control"]["mean"] == -10 and found["dtvg", "pt", "control"]["wins"] == 0
    config.comparisons.pairs = [["dtvg", "nope"]]
    with pytest.raises(MtptError, match=r"comparisons.pairs\[0\]: expected \[row, baseline\]"):
        comparison_plan(config)


# --- the learning-rate search ---------------------------------------------------------------------------------------
def test_search_choice_breaks_ties_towards_one_and_waits_for_every_run():
    from mtpt.bench.quality_grid import choose

    assert choose({0.3: 50.0, 1.0: 60.0, 3.0: 55.0}) == 1.0
    assert choose({0.3: 61.0, 1.0: 60.0, 3.0: 61.0}) == 3.0  # ×3 is nearer ×1 in ratio than ×0.3 (1/0.3 = 3.33)
    assert choose({0.5: 61.0, 1.0: 60.0, 2.0: 61.0}) == 0.5  # as near: the smaller
    assert choose({0.3: 60.0, 1.0: 60.0, 3.0: 60.0}) == 1.0
    assert choose({0.3: 70.0, 1.0: None}) is None and choose({}) is None


def test_scaling_multiplies_every_declared_learning_rate_that_is_set():
    from mtpt.bench.quality_grid import scale_learning_rates

    ta_lora = {"name": "ta_lora", "stage": "target", "lr_fast": 0.03, "source_run": "x"}
    scaled = scale_learning_rates(ta_lora, 3)
    assert scaled["lr_fast"] == pytest.approx(0.09) and "lr_slow" not in scaled and "lr_gate" not in scaled
    assert ta_lora["lr_fast"] == 0.03  # the section is not changed in place
    dtvg = {"name": "dtvg", "lr_source_scales": 0.01, "target_prompt": "{target_stage1}"}
    assert scale_learning_rates(dtvg, 0.5) == {**dtvg, "lr_source_scales": 0.005}
    assert scale_learning_rates(dtvg, 1) is dtvg
    assert scale_learning_rates({"name": "pt"}, 3) == {"name": "pt"}  # PT's only rate is train.lr


def test_search_config_errors_name_the_field():
    from mtpt.bench.quality_config import LrGridSection, QualityConfig
    from mtpt.bench.quality_grid import searched_labels
    from mtpt.errors import MtptError

    methods = {"zero_shot": {"name": "zero_shot"}, "pt": {"name": "pt"}, "dtvg": {"name": "dtvg"},
               "dtvg_all": {"name": "dtvg", "ablation": "all_sources"},
               "pt_unseen": {"name": "pt", "targets": ["src"]}}
    config = QualityConfig(methods=methods, lr_grid=LrGridSection(
        target="t", seed=87, multipliers=[0.3, 1, 3], same_as={"dtvg_all": "dtvg", "pt_unseen": "pt"}))
    assert searched_labels(config) == ["pt", "dtvg"]  # zero-shot trains nothing; the others take a choice
    config.lr_grid.same_as = {"dtvg_all": "dtvg"}
    with pytest.raises(MtptError, match="section 'pt_unseen' has its own targets.*same_as.pt_unseen"):
        searched_labels(config)
    config.lr_grid.same_as = {"dtvg_all": "dtvg_x", "pt_unseen": "pt"}
    with pytest.raises(MtptError, match="lr_grid.same_as.dtvg_all"):
        searched_labels(config)
    config.lr_grid.same_as, config.lr_grid.target = {"dtvg_all": "dtvg", "pt_unseen": "pt"}, ""
    with pytest.raises(MtptError, match="lr_grid.target"):
        searched_labels(config)


def test_reuse_must_name_a_benchmark_folder(tmp_path):
    from mtpt.bench.quality_config import parse_quality_args
    from mtpt.errors import MtptError

    with pytest.raises(MtptError, match=r"reuse: .*missing holds none of library/"):
        parse_quality_args(["--reuse", str(tmp_path / "missing")])
    (tmp_path / "recorded" / "lr-grid").mkdir(parents=True)
    config, _ = parse_quality_args(["--reuse", str(tmp_path / "recorded")])
    assert config.reuse == str(tmp_path / "recorded")


def test_section_seeds_filter_and_validate():
    from mtpt.bench.quality_config import QualityConfig, section_seeds
    from mtpt.errors import MtptError

    config = QualityConfig(seeds=[13, 21, 42], methods={"pt": {"name": "pt"}, "one": {"name": "pt", "seeds": [42]},
                                                        "bad": {"name": "pt", "seeds": "42"}})
    assert section_seeds(config, "pt") == [13, 21, 42] and section_seeds(config, "pt", [21]) == [21]
    assert section_seeds(config, "one") == [42] and section_seeds(config, "one", [13]) == []
    with pytest.raises(MtptError, match="methods.bad.seeds: expected a list"):
        section_seeds(config, "bad")


def test_workers_share_jobs_and_wait_for_each_others(tmp_path):
    """Two workers (threads: flock locks are per open file, so they exclude each other like processes) given the
    same jobs do each once, a job that depends on others only after them; each worker returns only once every job
    is done (waiting for the ones the other holds)."""
    from mtpt.bench.sharing import Job, share_work

    done: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()

    def job(name: str, needs: tuple[str, ...] = ()) -> Job:
        def work():
            time.sleep(0.2)
            with lock:
                assert name not in done and all(n in done for n in needs)
                done[name] = (threading.current_thread().name, time.perf_counter())

        return Job(tmp_path / name, work, lambda: name in done, lambda: all(n in done for n in needs))

    results = {}

    def worker():
        jobs = [job("a"), job("b"), job("c"), job("after-abc", ("a", "b", "c")), job("d")]
        results[threading.current_thread().name] = (share_work(jobs, poll_s=0.05), time.perf_counter())

    threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == ["a", "after-abc", "b", "c", "d"] and {w for w, _ in done.values()} == {"w0", "w1"}
    assert done["after-abc"][1] > max(done[n][1] for n in "abc")
    last = max(t for _, t in done.values())
    for name, (statuses, finished) in results.items():  # each returned only once every job was done
        assert finished >= last and len(statuses) == 5
        assert {s for _, s in statuses} <= {"done here", "done elsewhere", "skipped"}



def test_a_worker_that_need_not_wait_returns_with_what_another_holds(tmp_path):
    """share_work(wait=False): the jobs it can take are done, the one another worker holds (and the one that depends
    on it) are reported ``held elsewhere`` at once instead of waited for."""
    from helpers import folder_held_by_another_process

    from mtpt.bench.sharing import Job, share_work

    done = []

    def job(name, needs=()):
        return Job(tmp_path / name, lambda: done.append(name), lambda: name in done,
                   lambda: all(n in done for n in needs))

    with folder_held_by_another_process(tmp_path / "held"):
        start = time.perf_counter()
        statuses = dict(share_work([job("a"), job("held"), job("after-held", ("held",)), job("b")], poll_s=30,
                                   wait=False))
        assert time.perf_counter() - start < 10  # neither the holder's lock nor the 30 s poll was waited for
    assert done == ["a", "b"]
    assert [statuses[tmp_path / n] for n in ("a", "held", "after-held", "b")] == [
        "done here", "held elsewhere", "held elsewhere", "done here"]


def test_sections_whose_prerequisites_another_worker_trains_come_last(tmp_path):
    """Bench.free_first: while another worker trains a library source, the sections that need the library are
    taken after those that do not; with nothing held, the config's order."""
    from helpers import folder_held_by_another_process

    from mtpt.bench.quality import Bench
    from mtpt.bench.quality_config import QualityConfig, library_path
    from mtpt.library.format import entry_folder

    toy_task("v2-src-a")
    config = QualityConfig(backbone="tiny-llama", out=str(tmp_path / "bench"), targets=["v2-src-a"], methods={
        "spot": {"name": "spot", "target_prompt": "{target_stage1}"}, "zero_shot": {"name": "zero_shot"},
        "pt": {"name": "pt"}})
    config.library.sources = ["v2-src-a"]
    bench = Bench(config)
    assert list(bench.free_first(["spot", "zero_shot", "pt"])) == ["spot", "zero_shot", "pt"]
    source = library_path(config) / "_runs" / entry_folder("v2-src-a", config.library.seeds[0])
    source.parent.mkdir(parents=True)
    with folder_held_by_another_process(source):
        assert bench.held_elsewhere("spot") and not bench.held_elsewhere("pt")
        assert list(bench.free_first(["spot", "zero_shot", "pt"])) == ["zero_shot", "pt", "spot"]

def test_gates_wait_for_a_library_another_worker_trains_only_when_nothing_else_can_run(tmp_path, monkeypatch):
    """Bench.run: with the cells to run, the gates of a library another worker is training come just before the
    first section that needs the library (zero-shot and PT cells first); with nothing held, or with the gates as
    the last phase, they come first."""
    from helpers import folder_held_by_another_process

    from mtpt.bench.quality import Bench
    from mtpt.bench.quality_config import QualityConfig, library_path
    from mtpt.library.format import entry_folder

    toy_task("v2-src-a")
    config = QualityConfig(backbone="tiny-llama", out=str(tmp_path / "bench"), targets=["v2-src-a"], seeds=[1],
                           methods={"spot": {"name": "spot"}, "pt": {"name": "pt"}})
    config.library.sources = ["v2-src-a"]

    def order(phases) -> list[str]:
        bench, calls = Bench(config), []
        monkeypatch.setattr(bench, "gates", lambda: calls.append("gates"))
        monkeypatch.setattr(bench, "ensure_library", lambda: calls.append("library") or "lib")
        monkeypatch.setattr(bench, "multiplier", lambda label: 1.0)
        monkeypatch.setattr(bench, "_cell", lambda label, *args: calls.append(label) or "done here")
        bench.run(phases=phases)
        return calls

    assert order(("gates", "cells")) == ["gates", "library", "spot", "pt"]
    source = library_path(config) / "_runs" / entry_folder("v2-src-a", config.library.seeds[0])
    source.parent.mkdir(parents=True)
    with folder_held_by_another_process(source):
        assert order(("gates", "cells")) == ["pt", "library", "gates", "spot"]
        assert order(("gates",)) == ["gates"]


# --- the v2 protocol end to end -------------------------------------------------------------------------------------
@pytest.fixture
def v2_config(tmp_path):
    for name in ("v2-src-a", "v2-src-b", "v2-target", "v2-control"):
        toy_task(name, n_train=16, n_eval=8)
    config = {
        "backbone": "tiny-llama", "out": str(tmp_path / "v2"),
        "library": {"sources": ["v2-src-a", "v2-src-b"], "steps": 2, "eval_every": 1, "patience": 1,
                    "max_train_examples": 8, "learned_margin": -100, "drop_unlearned": True},
        "target_stage1": {"steps": 1}, "targets": ["v2-target", "v2-control"], "kshot": 2, "seeds": [1, 2],
        "steps": 2, "prompt_length": 4,
        "methods": {
            "zero_shot": {"name": "zero_shot"},
            "pt": {"name": "pt"},
            "spot": {"name": "spot", "mode": "retrieve", "target_prompt": "{target_stage1}", "skip_unlearned": True},
            "dtvg": {"name": "dtvg", "target_prompt": "{target_stage1}", "lr_source_scales": 0.02},
            "dtvg_all_sources": {"name": "dtvg", "ablation": "all_sources", "target_prompt": "{target_stage1}",
                                 "lr_source_scales": 0.02, "seeds": [1]},
            "mpt": {"name": "mpt", "stage": "target", "source_stage": {"name": "mpt", "stage": "source"}},
            "pt_unseen_data": {"name": "pt", "targets": ["v2-src-a"], "seeds": [1]},
        },
        "lr_grid": {"target": "v2-target", "seed": 3, "multipliers": [0.5, 2],
                    "same_as": {"dtvg_all_sources": "dtvg", "pt_unseen_data": "pt"}},
        "gates": True, "exclude_source_overlap": True,
        "comparisons": {"versus_baseline": True, "pairs": [["dtvg", "spot"], ["dtvg", "dtvg_all_sources"]],
                        "controls": ["v2-control"], "bootstrap_resamples": 200},
        "data": {"max_eval_examples": 4},
        "train": {"batch_size": 2, "lr": 0.01, "eval_every": 1},
        "eval": {"batch_size": 4, "final_splits": ["test"], "score_last": True},
    }
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, tmp_path / "v2"


def statuses(capsys) -> list[str]:
    return [line.split()[-1] for line in capsys.readouterr().out.splitlines() if " seed " in line]


def test_v2_protocol_end_to_end(v2_config, capsys, monkeypatch):
    path, out = v2_config
    # phase by phase, as the lead launches it: sources first (nothing else)
    assert bench("quality", str(path), "--phase", "sources") == 0
    assert (out / "library" / "manifest.json").exists() and len(list(out.glob("source-stages/mpt-*/results.json"))) == 1
    assert not (out / "cells").exists() and not (out / "lr-grid").exists() and not (out / "gates").exists()
    stage = yaml.safe_load(next(out.glob("source-stages/mpt-*/config.yaml")).read_text())
    assert stage["tasks"] == ["v2-src-a", "v2-src-b"] and not list(out.rglob(".gitignore"))

    assert bench("quality", str(path), "--phase", "gates") == 0
    prompts = sorted(p.name for p in (out / "gates" / "zero-training").iterdir() if p.is_dir())
    assert prompts == ["_mixture.seed-42", "p_init", "v2-src-a.seed-42", "v2-src-b.seed-42", "zero_shot"]
    record = json.loads((out / "gates" / "zero-training" / "v2-src-a.seed-42" / "v2-target.json").read_text())
    assert record["examples"] == 4 and 0 <= record["score"] <= 100
    assert "v2-target test" in (out / "gates" / "overlap.txt").read_text()

    assert bench("quality", str(path), "--phase", "grid") == 0
    searched = sorted(p.name for p in (out / "lr-grid").iterdir() if p.is_dir())
    assert searched == ["dtvg", "mpt", "pt", "spot"]  # zero-shot trains nothing; same_as sections take a choice
    run = out / "lr-grid" / "dtvg" / "x0.5"
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["train"]["lr"] == pytest.approx(0.005) and recorded["method"]["lr_source_scales"] == pytest.approx(0.01)
    assert recorded["tasks"] == ["v2-target"] and recorded["data"]["kshot_seed"] == 3
    assert set(json.loads((run / "results.json").read_text())["final"]) == {"validation"}  # no test score
    summary = json.loads((out / "lr-grid" / "lr-grid.json").read_text())["sections"]
    assert summary["dtvg_all_sources"]["decided_by"] == "dtvg" and summary["dtvg"]["chosen"] in (0.5, 2)
    assert not (out / "cells").exists()

    assert bench("quality", str(path), "--status") == 0
    status = capsys.readouterr().out
    assert "learning-rate search on v2-target seed 3: 8 of 8 runs done" in status
    assert "| dtvg_all_sources | 0/0/1 | 0/0/1 |" in status and "| pt | 0/0/2 | 0/0/2 |" in status

    assert bench("quality", str(path)) == 0  # the cells (every earlier phase is skipped)
    ran = statuses(capsys)
    assert (ran.count("trained"), ran.count("evaluated")) == (4 * 4 + 2 + 1, 4) and not list(out.rglob(".gitignore"))
    chosen = {label: summary[label]["chosen"] for label in ("pt", "dtvg")}
    for label, decided in (("pt", "pt"), ("dtvg", "dtvg"), ("dtvg_all_sources", "dtvg"), ("pt_unseen_data", "pt")):
        cell = next((out / "cells" / label).glob("*/seed-1"))
        recorded = yaml.safe_load((cell / "config.yaml").read_text())
        assert recorded["train"]["lr"] == pytest.approx(0.01 * chosen[decided]), label
        assert recorded["data"]["exclude_overlap_with"] == ["v2-src-a", "v2-src-b"]
    assert not (out / "cells" / "dtvg_all_sources" / "v2-target" / "seed-2").exists()
    # every row scored on the same test examples: the sources' leakage rules apply to zero-shot and PT too
    for label in ("zero_shot", "pt", "spot"):
        results = json.loads((out / "cells" / label / "v2-target" / "seed-1" / "results.json").read_text())
        assert results["leakage"]["sources"][-2:] == ["v2-src-a", "v2-src-b"] and "final_last" in results

    table = (out / "results.md").read_text()
    for text in ("## Gates: could transfer show here?", "| v2-src-a (seed 42) |", "Zero-training matrix",
                 "| bare backbone (zero-shot) |", "Learning-rate search (lr_grid)", "| dtvg_all_sources |",
                 "(= dtvg's)", "Step 0:", "[rms ", "test score of the model after the last step",
                 "Paired comparisons", "| dtvg | spot |", "v2-control (control)", "95 % bootstrap interval"):
        assert text in table, text
    assert table.index("## Gates") < table.index("## Tables") < table.index("Paired comparisons")
    saved = json.loads((out / "results.json").read_text())["comparisons"]
    for checkpoint in ("best", "last"):
        mine = [c for c in saved if c["checkpoint"] == checkpoint]
        again = recompute_module().recompute(path, checkpoint=checkpoint)
        assert len(mine) == len(again) > 0
        for a, b in zip(mine, again):
            assert {k: a[k] for k in ("row", "baseline", "group", "targets", "cells", "wins", "losses")} == \
                   {k: b[k] for k in ("row", "baseline", "group", "targets", "cells", "wins", "losses")}
            for k in ("mean", "p", "ci_low", "ci_high"):
                assert a[k] == pytest.approx(b[k], abs=1e-9), (a["row"], a["baseline"], k)

    # recorded cells regenerated in a fresh folder from the recorded shared runs (--reuse): the library, the source
    # stage, the search and the target stage-I runs are read there, nothing is written there, the scores are the same
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    fresh = out.parent / "regen"
    assert bench("quality", str(path), "--out", str(fresh), "--reuse", str(out), "--phase", "cells",
                 "--methods", "spot", "mpt", "dtvg_all_sources", "--seeds", "1") == 0
    assert statuses(capsys) == ["trained"] * 6  # two targets of three rows; no shared run trained
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert sorted(p.name for p in fresh.iterdir() if p.is_dir()) == ["cells"]
    for label in ("spot", "mpt", "dtvg_all_sources"):
        for cell in (out / "cells" / label).glob("*/seed-1"):
            again = fresh / cell.relative_to(out)
            recorded = json.loads((cell / "results.json").read_text())
            assert json.loads((again / "results.json").read_text())["final"] == recorded["final"], again
            assert yaml.safe_load((again / "config.yaml").read_text())["train"]["lr"] == \
                   yaml.safe_load((cell / "config.yaml").read_text())["train"]["lr"]

    # a rerun skips everything without loading a model, and a changed search choice is refused, not mixed in
    import mtpt.backbones

    monkeypatch.setattr(mtpt.backbones, "load_backbone", lambda *a, **k: pytest.fail("loaded a model"))
    assert bench("quality", str(path)) == 0
    assert set(statuses(capsys)) == {"skipped"}
    grid_run = out / "lr-grid" / "pt" / f"x{chosen['pt']:g}"
    results = json.loads((grid_run / "results.json").read_text())
    results["best_metric"] = -1.0  # the other multiplier now wins the search
    (grid_run / "results.json").write_text(json.dumps(results))
    from mtpt.errors import MtptError

    with pytest.raises(MtptError, match=r"finished with another configuration .*train\.lr"):
        bench("quality", str(path), "--methods", "pt")


def test_recompute_script_prints_the_comparisons(v2_config, tmp_path, capsys):
    """On a synthetic cell tree (results.json files only, no training), the script's numbers are the report's."""
    from mtpt.bench.quality_compare import compare_rows
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.bench.quality_report import collect
    from mtpt.config import parse_config

    path, out = v2_config
    config = parse_config(QualityConfig, [str(path)], "test", "bench")
    scores = {"zero_shot": 40, "pt": 50, "spot": 52, "dtvg": 55, "dtvg_all_sources": 51, "mpt": 45,
              "pt_unseen_data": 60}
    for label, base in scores.items():
        section = config.methods[label]
        for t, target in enumerate(section.get("targets") or config.targets):
            for seed in section.get("seeds") or config.seeds:
                cell = out / "cells" / label / target / f"seed-{seed}"
                cell.mkdir(parents=True)
                score = base + 3 * seed - 7 * t + (label == "dtvg") * seed
                (cell / "results.json").write_text(json.dumps({
                    "final": {"test": {target: {"score": score}}},
                    "final_last": {"test": {target: {"score": score - seed}}}}))
    rows = collect(config)
    module = recompute_module()
    for which in ("best", "last"):
        report = compare_rows(config, rows, which)
        again = module.recompute(path, checkpoint=which)
        assert [(c["row"], c["baseline"], c["group"]) for c in report] == \
               [(c["row"], c["baseline"], c["group"]) for c in again]
        for a, b in zip(report, again):
            for k in ("cells", "wins", "losses", "mean", "p", "ci_low", "ci_high", "targets"):
                assert a[k] == pytest.approx(b[k]) if isinstance(a[k], float) else a[k] == b[k]
    dtvg = next(c for c in compare_rows(config, rows) if (c["row"], c["baseline"], c["group"]) == ("dtvg", "pt", "related"))
    assert (dtvg["cells"], dtvg["wins"], dtvg["mean"]) == (2, 2, 5 + 1.5)
    assert module.main([str(path)]) == 0
    printed = capsys.readouterr().out
    assert "dtvg vs pt (related: v2-target; best): 2 cells, 2 wins / 0 losses, mean +6.50" in printed
    # differences 6 and 7: their sample standard deviation, which the report does not show
    assert "sign-test p=0.500, sd of the differences 0.71\n" in printed.split("dtvg vs pt (related", 1)[1]


def test_sources_that_did_not_learn_are_left_out_of_the_mixture_and_the_source_stages(tmp_path):
    import torch

    from mtpt.bench.quality import Bench
    from mtpt.bench.quality_config import LibrarySection, QualityConfig
    from mtpt.errors import MtptError
    from mtpt.library.format import LibraryEntry, SourceLibrary

    for name in ("ga", "gb", "gc"):
        toy_task(name, n_train=4, n_eval=2)
    library = SourceLibrary.create(tmp_path / "library", backbone="gb", weights_hash="h", init_prompt=torch.zeros(2, 3))
    for task, learned in (("ga", True), ("gb", False), ("gc", None)):  # None: recorded before the gate existed
        library.add_entry(LibraryEntry(task=task, seed=42, path=f"{task}/seed-42", learned=learned),
                          torch.zeros(2, 3), {})
    section = LibrarySection(sources=["ga", "gb", "gc"], seeds=[42], drop_unlearned=True)
    stage = {"name": "ta_lora", "stage": "source"}
    config = QualityConfig(out=str(tmp_path), library=section, methods={
        "mpt": {"name": "mpt", "stage": "target", "source_stage": {"name": "mpt", "stage": "source"}},
        "unseen": {"name": "ta_lora", "stage": "target", "target_init": "reuse", "targets": ["ga", "gb"],
                   "source_stage": stage},
        "pt_unseen": {"name": "pt", "targets": ["ga", "gb"]}})
    bench_ = Bench(config)
    assert bench_.stage_sources() == ["ga", "gc"]
    assert bench_.source_stage_run(config.methods["mpt"], str(tmp_path / "library")).tasks == ["ga", "gc"]
    # the unseen-data protocol cannot continue a source the stage left out: that cell is left out, its baseline not
    assert [bench_.left_out(label, t) for label in ("unseen", "pt_unseen") for t in ("ga", "gb")] == [
        False, True, False, False]
    section.drop_unlearned = False
    assert bench_.stage_sources() == ["ga", "gb", "gc"] and not bench_.left_out("unseen", "gb")
    section.drop_unlearned = True
    library.add_entry(LibraryEntry(task="ga", seed=42, path="ga/seed-42", learned=False), torch.zeros(2, 3), {},
                      overwrite=True)
    library.add_entry(LibraryEntry(task="gc", seed=42, path="gc/seed-42", learned=False), torch.zeros(2, 3), {},
                      overwrite=True)
    with pytest.raises(MtptError, match="No source of .* learned its task"):
        bench_.stage_sources()
