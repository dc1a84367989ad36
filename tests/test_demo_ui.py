"""The demo's first-hour fixes without a browser: the queue's words, a negative prompt the guidance ignores, the
preset's label, restoring settings, the session history, and upscaling through the service (the browser side is
tests/test_browser_ui.py)."""
import threading

import pytest
from PIL import Image

from demo.service import DemoService
from demo.tabs.history import history_items, with_results
from demo.tabs.presets import CUSTOM, DEFAULTS, preset_holds, preset_info
from demo.tabs.text_to_image import negative_notice, restore_settings
from demo.widgets import follow, queue_words
from glide.families import FAMILIES
from glide.serving.jobs import Generate, Job
from glide.serving.local import LocalBackend
from glide.settings import GenerationSettings, ignored_negative_prompt

PROMPT = "a small red circle on the left on a blue background"


# ---------------------------------------------------------------------------------------------- queue
def test_every_waiting_user_is_told_how_many_jobs_are_ahead():
    """While A's job runs, B (next in line) and C (behind B) both hear how many jobs come first, in the same words:
    B is not told "Starting…" for the whole of A's job."""
    gate = threading.Event()

    def runner(batch, report, should_stop):
        assert gate.wait(10)
        return [None for _ in batch.jobs]

    backend = LocalBackend(runner=runner, workers=1)
    try:
        def submit(user, steps):   # different steps: jobs that cannot share a run
            settings = GenerationSettings.create(PROMPT, seed=0, steps=steps, upsample=False)
            return backend.submit(Job(Generate(settings), session=user, user=user))

        first = submit("a", 2)
        assert first.started.wait(5)
        second, third = submit("b", 3), submit("c", 4)
        said = [next(follow(job, lambda *a, **k: None, "status", "preview"))["status"] for job in (second, third)]
        assert said == ["Waiting for the device: 1 job ahead of yours (1 running).",
                        "Waiting for the device: 2 jobs ahead of yours (1 running, 1 waiting)."]
    finally:
        gate.set()
        backend.close()


def test_queue_words_say_starting_only_with_nothing_ahead():
    assert queue_words(0, 0) == "Starting…"
    assert queue_words(0, 1) == "Waiting for the device: 1 job ahead of yours (1 waiting)."


# ---------------------------------------------------------------------------------------------- negative prompt
@pytest.mark.parametrize("guidance", ["clip", "none"])
def test_a_negative_prompt_the_guidance_ignores_is_said_and_not_recorded(guidance):
    assert f"ignored with '{guidance}' guidance" in ignored_negative_prompt("a green square", guidance)
    assert "ignored" in negative_notice("a green square", guidance)
    settings = GenerationSettings.create(PROMPT, seed=1, guidance=guidance, negative_prompt="a green square")
    assert settings.per_image()[0]["negative_prompt"] == ""


def test_a_negative_prompt_classifier_free_guidance_reads_is_kept_without_a_word():
    assert ignored_negative_prompt("a green square", "classifier-free") == ""
    assert ignored_negative_prompt("a green square", None) == ""   # the default strategy: classifier-free
    assert ignored_negative_prompt("  ", "clip") == "" and negative_notice("", "none") == ""
    settings = GenerationSettings.create(PROMPT, seed=1, negative_prompt="a green square")
    assert settings.per_image()[0]["negative_prompt"] == "a green square"


def test_the_cli_warns_about_an_ignored_negative_prompt(tmp_path, capsys):
    from glide.cli import main
    from glide.pngmeta import read_settings

    assert main(["generate", PROMPT, "--guidance", "none", "--negative-prompt", "a green square", "--steps", "1",
                 "--no-upsample", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: the negative prompt is ignored with 'none' guidance" in err
    assert read_settings(out.split()[0])["negative_prompt"] == ""


# ---------------------------------------------------------------------------------------------- preset, restore
def test_the_preset_help_describes_the_choice_it_shows():
    assert "DPM-Solver++(3M)" in preset_info("fast")
    assert "DPM-Solver++(3M)" not in preset_info(DEFAULTS) and "model's own defaults" in preset_info(DEFAULTS)
    assert preset_info(CUSTOM).startswith("Your own settings")


def test_the_preset_holds_until_a_control_it_set_shows_another_value():
    limits = GenerationSettings.create(PROMPT, seed=0).limits
    fast = dict(sampler="dpm++3m", steps=6.0, upsample_sampler="ddim", upsample_steps="4", deep_cache=3,
                upsample_deep_cache=2, interval="0.28,5.42")
    assert preset_holds("fast", "shapes", "classifier-free", fast, limits)
    assert not preset_holds("fast", "shapes", "classifier-free", {**fast, "steps": 30}, limits)
    assert not preset_holds("fast", "shapes", "classifier-free", {**fast, "interval": ""}, limits)
    defaults = dict(sampler="dpm++2m", steps=10, upsample_sampler="ddim", upsample_steps="8", deep_cache=0,
                    upsample_deep_cache=0, interval="")
    assert preset_holds(DEFAULTS, "shapes", "classifier-free", defaults, limits)   # typing the same value again
    assert not preset_holds(CUSTOM, "shapes", "classifier-free", defaults, limits)
    # Inpainting shows fewer of the controls a preset sets: those it shows decide.
    shown = dict(sampler="dpm++3m", steps=6, deep_cache=3, upsample_deep_cache=2)
    assert preset_holds("fast", "shapes", "classifier-free", shown, limits, mode="inpaint")
    assert not preset_holds("fast", "shapes", "classifier-free", {**shown, "deep_cache": 0}, limits, mode="inpaint")


def test_restoring_recorded_settings_says_what_this_tab_cannot_set():
    made = GenerationSettings.create(PROMPT, seed=7, steps="ddim5", upsample=False).per_image()[0]
    restored, status = restore_settings(made, GenerationSettings.create(PROMPT, seed=0).limits)
    assert restored.seeds == (7,) and restored.steps == "ddim5"
    assert status.startswith("Restored the settings of seed 7 (shapes)") and "schedule the slider cannot show" in status


# ---------------------------------------------------------------------------------------------- history
def test_the_history_keeps_the_newest_results_first_up_to_its_limit():
    entries = with_results([], ["a.png", "b.png"], [{"seed": 1, "prompt": PROMPT}, {"seed": 2, "prompt": PROMPT}])
    entries = with_results(entries, ["c.png"], [{"seed": 9, "prompt": "short"}], limit=2)
    assert [e["path"] for e in entries] == ["c.png", "a.png"]
    assert history_items(entries) == [("c.png", "seed 9 · short"), ("a.png", f"seed 1 · {PROMPT[:40]}…")]


# ---------------------------------------------------------------------------------------------- warm-up
def test_the_service_warms_up_every_ready_component_in_the_background(tmp_path, monkeypatch):
    warmed, done = [], threading.Event()

    def warm_up(pipe, names):
        warmed.append((pipe.name, names))
        done.set()

    monkeypatch.setattr("glide.pipeline.Pipeline.warm_up", warm_up)
    service = DemoService(device="cpu", out_dir=tmp_path / "out")
    try:
        service.warm_up()
        assert done.wait(timeout=60)
        ready = [name for name, info in service.models()["shapes"]["components"].items() if info["ready"]]
        assert warmed == [("shapes", ready)] and "base" in ready and "upsample" in ready
    finally:
        service.backend.close()


# ---------------------------------------------------------------------------------------------- upscale
def test_the_service_upscales_an_upload_by_the_familys_factor(tmp_path):
    family = FAMILIES["shapes"]
    upload = tmp_path / "small.png"
    Image.new("RGB", (48, 32), (40, 50, 200)).save(upload)   # not square: centre-cropped first
    service = DemoService(device="cpu", out_dir=tmp_path / "out")
    try:
        settings = service.sample_request(PROMPT, mode="upsample", seed=3, upsample_steps="2")
        out = service.submit_upsample(settings, [str(upload)]).outcome(timeout=120)
        with Image.open(out.images[0]) as made:
            assert made.size == (family.upsample_size,) * 2 == (4 * family.base_size,) * 2
        assert out.settings[0]["mode"] == "upsample" and out.settings[0]["seed"] == 3
        with pytest.raises(Exception, match="give an image to upscale"):
            service.submit_upsample(settings, [None])
    finally:
        service.backend.close()
