"""The benchmark suite (`python -m bench`) in its quick form: tables print, JSON has every section's structure."""
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import cli, sections
from bench.sections import forward, sample

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `python -m bench --quick` in a fresh process, single-threaded (the CPU is shared)."""
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--device", "cpu", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_path] = list(out.glob("*-quick.json"))
    return proc.stdout, json.loads(json_path.read_text()), json_path


def _positive(x):
    return isinstance(x, (int, float)) and x > 0


def test_tables_print_and_files_are_written(quick_run):
    stdout, _, json_path = quick_run
    for title in ("== Run", "== Dense matmul rate", "== Forward pass", "== Text -> ", "== Embedded default model",
                  "== Throughput vs batch size", "== DeepCache: seconds per sampling step", "== Loading a model"):
        assert title in stdout
    assert "CPU" in stdout and "threads" in stdout          # the CPU model and thread count are stated
    md = json_path.with_suffix(".md")
    assert md.exists() and "| model | batch | variant |" in md.read_text()


def test_meta_describes_the_device(quick_run):
    _, data, json_path = quick_run
    meta = data["meta"]
    assert meta["quick"] is True and meta["schema"] == cli.SCHEMA_VERSION
    assert meta["device"]["type"] == "cpu" and meta["device"]["cpu_model"]
    assert meta["device"]["torch_threads"] == 1
    assert "cuda" not in json_path.name and "gpu_memory_gb" not in meta["device"]   # no GPU figures on a CPU
    assert set(data["sections"]) == set(sections.SECTIONS)
    assert all(_positive(s["elapsed_s"]) or s["elapsed_s"] == 0 for s in data["sections"].values())


def test_matmul_and_forward(quick_run):
    _, data, _ = quick_run
    rates = {r["dtype"]: r for r in data["sections"]["matmul"]["results"]}
    assert {"float32", "bfloat16"} <= set(rates)
    assert all(_positive(r["gflop_per_s"]) and _positive(r["n"]) for r in rates.values())

    rows = data["sections"]["forward"]["results"]
    assert {(r["model"], r["variant"]) for r in rows} >= {
        ("base", "float32"), ("base", "channels_last"), ("base", "bf16-autocast"),
        ("upsample", "float32"), ("upsample", "channels_last")}
    for r in rows:
        assert r["status"] == "ok", r
        for key in ("ms", "gflop", "gflop_per_item", "gflop_per_s", "mfu", "items_per_s", "peak_gflop_per_s"):
            assert _positive(r[key]), (key, r)
        assert r["ms_samples"] and r["repeats"] == len(r["ms_samples"])
        if r["variant"] != "float32":
            assert 0 <= r["rel_err_vs_float32"] < 0.1, r      # same model, other precision/layout
    base = next(r for r in rows if r["model"] == "base" and r["variant"] == "float32")
    assert base["batch"] == 2                                  # one classifier-free pair
    assert 0 < base["text_encoder_gflop"] < base["gflop"]


def test_sample(quick_run):
    _, data, _ = quick_run
    results = {r["setting"]: r for r in data["sections"]["sample"]["results"]}
    assert set(results) >= {"reference", "fast"}
    for r in results.values():
        assert r["status"] == "ok" and _positive(r["seconds"]) and _positive(r["peak_mem_mb"]) and r["mem_method"]
        assert r["extrapolated"] is True and "extrapolated from 2 steps" in r["how"]   # CPU without --full
        assert [s["stage"] for s in r["stages"]] == ["base", "upsample"]
        for s in r["stages"]:
            assert _positive(s["ms_per_step"]) and _positive(s["seconds"]) and s["measured_steps"] == 2
    ref = results["reference"]["stages"]
    assert (ref[0]["sampler"], ref[0]["total_steps"], ref[0]["model_batch"]) == ("ddpm", 100, 2)
    assert (ref[1]["steps"], ref[1]["total_steps"], ref[1]["model_batch"]) == ("fast27", 27, 1)
    fast = results["fast"]["stages"]
    assert (fast[0]["sampler"], fast[0]["total_steps"]) == ("dpm++2m", 10)
    assert (fast[1]["sampler"], fast[1]["total_steps"]) == ("ddim", 8)


def test_sample_settings_can_be_chosen_and_the_layout_is_restored():
    args = cli.parse_args(["--quick", "--sample-settings", "fast", "--fast-base-steps", "2", "--fast-upsample-steps", "2"])
    settings = {k: getattr(args, k) for k in ("ref_base_steps", "ref_upsample_steps", "fast_base_steps",
                                              "fast_upsample_sampler", "fast_upsample_steps", "sample_settings")}
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args=settings)
    data, _ = sections.section_sample(b)
    assert [r["setting"] for r in data["results"]] == ["fast"] and data["results"][0]["status"] == "ok"
    # Sampled channels-last on the CPU (as the pipeline loads GLIDE), then put back for the later sections.
    assert all(next(p for p in b.model(name)[0].parameters() if p.dim() == 4).is_contiguous()
               for name in ("base", "upsample"))
    with pytest.raises(SystemExit):
        cli.parse_args(["--sample-settings", "fastest"])


def test_shapes_and_batch(quick_run):
    _, data, _ = quick_run
    shapes = data["sections"]["shapes"]
    assert shapes["status"] in ("ok", "skipped")   # skipped: a checkout without the trained weights
    if shapes["status"] == "ok":
        runs = {run["dtype_asked"]: run for run in shapes["runs"]}
        # float32 always; the automatic choice too where it is not float32 on this machine.
        assert set(runs) == {"float32"} | ({"auto"} if shapes["auto"]["dtype"] != "float32" else set())
        for run in runs.values():
            cold = run["cold_start"]
            assert all(_positive(cold[k]) for k in ("first_image_s", "import_s", "load_s", "generate_s"))
            assert cold["threads"] == 1 and cold["dtype"] == run["throughput"]["dtype"]
            assert _positive(run["throughput"]["images_per_s"]) and run["throughput"]["batch"] == 2
        assert runs["float32"]["cold_start"]["dtype"] == "float32"
    rows = data["sections"]["batch"]["results"]
    assert sorted({r["batch"] for r in rows}) == [1, 4]      # CPU: the quick form
    assert all(r["status"] == "ok" and _positive(r["items_per_s"]) and _positive(r["ms"]) for r in rows)


def test_deep_cache_steps_and_loading(quick_run):
    _, data, _ = quick_run
    steps = {r["model"]: r for r in data["sections"]["deepcache"]["results"]}
    assert {name: r["batch"] for name, r in steps.items()} == {"base": 2, "upsample": 1}
    for r in steps.values():
        assert r["status"] == "ok" and _positive(r["full_s"]) and _positive(r["shallow_s"]), r
        # The table reports what was timed (which is faster is the benchmark's finding, not a test's: timings
        # on a shared machine vary); the shallow step itself saving work is tests/test_deep_cache.py's.
        assert r["shallow_vs_full_max_abs_diff"] == 0
        assert r["per_step_s"]["2"] == pytest.approx((r["full_s"] + r["shallow_s"]) / 2)
        assert r["speedup"]["3"] == pytest.approx(r["full_s"] / r["per_step_s"]["3"])
    loads = data["sections"]["loading"]["results"]
    assert [(r["family"].split()[0], r["component"]) for r in loads[:2]] == [
        ("glide-filtered", "base"), ("glide-filtered", "upsample")]
    assert {r["family"] for r in loads[2:]} <= {"shapes"}
    for r in loads:
        assert r["status"] == "ok" and _positive(r["before_s"]) and _positive(r["after_s"]), r
        assert r["after_weights_read_s"] >= r["after_s"] and _positive(r["parameters"])


def test_a_variant_too_slow_for_the_budget_is_estimated_not_run():
    """bf16 on a CPU without bf16 units: the row is labelled as an estimate from the measured rate."""
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args={})
    b.rates = {"float32": {"gflop_per_s": 50.0}, "bfloat16": {"gflop_per_s": 1e-3}}
    row, out = forward.run_variant(b, "base", 2, forward.Variant("bf16-autocast", compute="bfloat16"),
                                    flops=1e9, reference=None)
    assert row["status"] == "skipped" and out is None and "base" not in b._models   # nothing was built or run
    assert row["estimated_ms"] == pytest.approx(1e6) and "--full" in row["note"]


def test_the_step_flags_reach_the_settings_that_run():
    """--fast-base-steps and --ref-upsample-steps change what the sample section samples, a spec staying a spec."""
    args = cli.parse_args(["--only", "forward,sample", "--fast-base-steps", "12", "--ref-upsample-steps", "fast27",
                           "--sample-settings", "reference,fast"])
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args=vars(args))
    chosen = sample.sample_settings(b)
    assert set(chosen) == {"reference", "fast"}
    assert [(s.stage, s.steps) for s in chosen["fast"].stages][0] == ("base", 12)
    assert [(s.stage, s.steps) for s in chosen["reference"].stages][1] == ("upsample", "fast27")
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "nonsense"])


def test_a_partial_run_does_not_overwrite_the_full_one():
    info, now = {"type": "cpu", "cpu_model": "AMD EPYC", "torch_threads": 2}, datetime.datetime(2026, 11, 27)
    slug = "cpu-amd-epyc-2t"
    assert cli.result_stem(info, now, cli.parse_args([])) == f"{slug}-2026-11-27"
    partial = cli.parse_args(["--only", "sample,matmul", "--full"])
    assert cli.result_stem(info, now, partial) == f"{slug}-2026-11-27-matmul-sample-full"


def test_a_spent_budget_skips_the_rest_and_still_writes_results(tmp_path):
    """--budget-s: nothing starts after the budget is spent; every section is listed; files are written."""
    rc = cli.main(["--quick", "--device", "cpu", "--budget-s", "0", "--out", str(tmp_path)])
    assert rc == 0
    [json_path] = list(tmp_path.glob("*-quick.json"))
    data = json.loads(json_path.read_text())
    assert data["meta"]["budget_s"] == 0
    assert set(data["sections"]) == set(sections.SECTIONS)
    assert all(s["status"] == "skipped" and "--budget-s" in s["note"] for s in data["sections"].values())
    assert json_path.with_suffix(".md").exists()


def test_budget_and_section_order():
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args={}, budget_s=1e6)
    assert not b.out_of_budget() and b.budget_left() > 0
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args={}, budget_s=5.0,
                       started=0.0)      # monotonic time 0: long ago
    assert b.out_of_budget() and "--budget-s 5" in b.budget_note()
    assert sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args={}).budget_left() is None
    with pytest.raises(SystemExit):
        cli.parse_args(["--budget-s", "-1"])


def test_a_budget_cut_loses_the_sections_that_matter_least(tmp_path, monkeypatch):
    """Sections run in SECTIONS order, the matmul rate first (every MFU's denominator) even when not asked for;
    once the budget is spent, the rest are skipped, so what a GPU run must show comes first."""
    ran = []

    def runner(name):
        def run(bench):
            ran.append(name)
            if name == "forward":
                bench.budget_s = 0.0     # the budget is spent during the second section
            return {"status": "ok"}, []
        return run

    monkeypatch.setattr(sections, "RUNNERS", {name: runner(name) for name in sections.SECTIONS})
    monkeypatch.setattr(cli, "RUNNERS", sections.RUNNERS)
    assert cli.main(["--quick", "--device", "cpu", "--only", "recipe,sample,forward", "--budget-s", "1e6",
                     "--out", str(tmp_path)]) == 0
    assert ran == ["matmul", "forward"]
    [json_path] = list(tmp_path.glob("*.json"))
    statuses = {name: s["status"] for name, s in json.loads(json_path.read_text())["sections"].items()}
    assert statuses == {"matmul": "ok", "forward": "ok", "sample": "skipped", "recipe": "skipped"}


def test_guidance_rows_time_every_strategy_and_say_what_an_interval_saves(quick_run):
    from bench.sections.guidance import GUIDANCE_ROWS

    _, data, _ = quick_run
    section = data["sections"]["guidance"]
    assert section["status"] in ("ok", "skipped")   # skipped: a checkout without the trained weights
    if section["status"] == "ok":
        rows = {r["guidance"]: r for r in section["results"]}
        assert list(rows) == list(GUIDANCE_ROWS)
        assert all(r["status"] == "ok" and _positive(r["seconds_per_image"]) and r["repeats"] == 3
                   for r in rows.values())
        for label, (_, params, without) in GUIDANCE_ROWS.items():
            assert (f"saves_vs_{without}" in rows[label]) == (without is not None)
            assert rows[label]["params"] == params
