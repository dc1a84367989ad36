"""The Gradio demo.

In-process: the scheduler's batching, seed assignment, per-user cancelling and queue limit; the
editor-layers-to-mask conversion; background downloads; error conversion. Then the real server
(`python app.py --port <free>` in a subprocess) through gradio_client: /generate, /inpaint and
/compare return images of the right size carrying their settings, bad inputs get clear errors,
and 8 concurrent clients all get their own images, batched into fewer sampling runs (as the backend
counts them, on /healthz); no test makes a handler fail (as /metrics counts failures). Sampling uses
2 steps per stage to stay fast on a CPU.
"""
import json
import re
import threading
import time

import numpy as np
import pytest
from fakes import Tag
from PIL import Image

from demo.imaging import grow_mask, painting_to_image_and_mask
from demo.models import Downloads
from demo.painter import painter_value
from glide.errors import Cancelled, InputError, QueueFull, RateLimited
from glide.families import FAMILIES
from glide.pngmeta import read_settings
from glide.serving.jobs import Compare, Generate, Job
from glide.serving.local import LocalBackend

PROMPT = "a small red circle on the left on a blue background"
FAST = dict(steps=2, upsample_steps="2")



# ---------------------------------------------------------------------------------------------- local backend
class FakeRunner:
    """Records batches; the job whose payload is "block" holds the worker until `gate` is set."""

    def __init__(self, step_delay=0.0):
        self.batches, self.gate, self.step_delay = [], threading.Event(), step_delay

    def __call__(self, batch, report, should_stop):
        if batch.jobs[0].payload.label == "block":
            assert self.gate.wait(10)
        self.batches.append(batch)
        for step in range(5):
            time.sleep(self.step_delay)
            report("base", step, 5, None)
            if should_stop():
                raise Cancelled("stopped")
        return [(batch.seeds[job.offset:job.offset + len(job.prompts)],
                 batch.prompts[job.offset:job.offset + len(job.prompts)]) for job in batch.jobs]


def job(prompts, seeds=None, key="k", payload=None, session=None):
    seeds = seeds if seeds is not None else list(range(len(prompts)))
    return Job(Tag(payload, tuple(prompts), tuple(seeds), key), session=session)


def test_scheduler_batches_compatible_requests_whatever_their_seeds():
    runner = FakeRunner()
    sched = LocalBackend(runner=runner, workers=1, max_batch=8)
    blocker = sched.submit(job(["x"], key="other", payload="block"))
    a = sched.submit(job(["a", "a"], seeds=[5, 900]))
    c = sched.submit(job(["c"], seeds=[100]))
    e = sched.submit(job(["e"], key="different"))     # other settings: a run of its own
    b = sched.submit(job(["b"], seeds=[5]))           # the same seed as a's first image: still batched
    runner.gate.set()
    results = {name: j.wait() for name, j in dict(blocker=blocker, a=a, b=b, c=c, e=e).items()}
    assert results["a"] == ([5, 900], ["a", "a"]) and results["c"] == ([100], ["c"]) and results["b"] == ([5], ["b"])
    assert [len(bt.jobs) for bt in runner.batches] == [1, 3, 1]
    assert runner.batches[1].prompts == ["a", "a", "c", "b"] and runner.batches[1].seeds == [5, 900, 100, 5]
    assert sched.stats()["runs"] == 3


def test_scheduler_respects_max_batch_in_arrival_order():
    runner = FakeRunner()
    sched = LocalBackend(runner=runner, workers=1, max_batch=3)
    sched.submit(job(["x"], key="other", payload="block"))
    first, second = sched.submit(job(["p", "p"])), sched.submit(job(["q", "q"]))   # 4 > 3: two runs
    third = sched.submit(job(["r"]))                                               # fits beside p
    runner.gate.set()
    assert first.wait()[1] == ["p", "p"] and second.wait()[1] == ["q", "q"] and third.wait()[1] == ["r"]
    assert [bt.prompts for bt in runner.batches[1:]] == [["p", "p", "r"], ["q", "q"]]


def test_cancelling_one_user_leaves_the_shared_run_to_the_others():
    runner = FakeRunner(step_delay=0.05)
    sched = LocalBackend(runner=runner, workers=1)
    sched.submit(job(["x"], key="other", payload="block"))
    mine, theirs = sched.submit(job(["a"], session="me")), sched.submit(job(["b"], session="you"))
    runner.gate.set()
    assert mine.started.wait(5)
    assert sched.cancel_session("me") == 1
    with pytest.raises(Cancelled):
        mine.wait()
    assert theirs.wait()[1] == ["b"]               # the run went on for the other user

    alone = sched.submit(job(["c"], session="me"))
    assert alone.started.wait(5)
    sched.cancel_session("me")
    assert alone.done.wait(5)
    with pytest.raises(Cancelled):                 # nobody needed the run any more: it stopped
        alone.outcome()


def test_queue_full():
    runner = FakeRunner()
    sched = LocalBackend(runner=runner, workers=1, max_pending=2)
    sched.submit(job(["x"], key="other", payload="block"))
    while not sched.stats()["running"]:
        time.sleep(0.01)
    sched.submit(job(["a"], key=None))
    sched.submit(job(["b"], key=None))
    with pytest.raises(QueueFull, match="queue is full"):
        sched.submit(job(["c"], key=None))
    runner.gate.set()


# ---------------------------------------------------------------------------------------------- helpers
def test_the_painted_mask_arrives_exactly_as_painted():
    image = Image.new("RGBA", (100, 80), (0, 0, 255, 0))        # transparent parts become white
    image.paste((0, 0, 255, 255), (0, 0, 50, 80))
    painted = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    painted.paste((255, 0, 255, 255), (10, 10, 30, 20))
    painted.putpixel((70, 60), (255, 0, 255, 1))                 # any opacity at all counts
    value = painter_value(image, 32)
    value["mask"] = painter_value(painted, 32)["image"]
    rgb, mask = painting_to_image_and_mask(value)
    assert rgb.mode == "RGB" and rgb.size == (100, 80) and mask.mode == "L"
    assert rgb.getpixel((10, 10)) == (0, 0, 255) and rgb.getpixel((90, 10)) == (255, 255, 255)
    m = np.asarray(mask)
    assert set(np.unique(m)) == {0, 255} and (m == 255).sum() == 20 * 10 + 1 and m[60, 70] == 255
    with pytest.raises(InputError, match="mask is empty"):
        painting_to_image_and_mask({**value, "mask": None})
    with pytest.raises(InputError, match="mask is empty"):
        painting_to_image_and_mask({**value, "mask": painter_value(Image.new("RGBA", (100, 80)), 32)["image"]})
    with pytest.raises(InputError, match="upload an image"):
        painting_to_image_and_mask({"id": None, "image": None, "base": 32, "mask": None})
    with pytest.raises(InputError, match="mask is 50x40 but the image is 100x80"):
        painting_to_image_and_mask({**value, "mask": painter_value(painted.resize((50, 40)), 32)["image"]})
    with pytest.raises(InputError, match="did not arrive as an image"):
        painting_to_image_and_mask({**value, "mask": "javascript:alert(1)"})
    with pytest.raises(InputError, match="could not be read"):
        painting_to_image_and_mask({**value, "mask": "data:image/png;base64,AAAA"})


def test_growing_the_mask_counts_model_pixels():
    mask = Image.new("L", (128, 64), 0)
    mask.putpixel((64, 32), 255)
    assert grow_mask(mask, 0, 32) is mask
    grown = np.asarray(grow_mask(mask, 1, 32))      # one model pixel = 64 / 32 = 2 image pixels
    ys, xs = np.nonzero(grown)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (30, 34, 62, 66) and grown.sum() == 25 * 255
    edge = Image.new("L", (16, 16), 0)
    edge.putpixel((0, 0), 255)
    assert np.asarray(grow_mask(edge, 2, 16)).sum() == 9 * 255   # clipped at the border


def test_background_download_reports_progress(tmp_path):
    release = threading.Event()

    def fake_fetch(name, checkpoint_dir):
        (tmp_path / ".base.pt.part").write_bytes(b"0" * 1000)   # a partial file, as glide.download writes
        assert release.wait(5)
        (tmp_path / ".base.pt.part").rename(tmp_path / "base.pt")

    downloads = Downloads(tmp_path, fetch=fake_fetch)
    downloads.start("glide-filtered")
    downloads.start("glide-filtered")  # a second click joins the running download
    deadline = time.time() + 5
    while downloads.status("glide-filtered")["done_bytes"] < 1000 and time.time() < deadline:
        time.sleep(0.01)
    status = downloads.status("glide-filtered")
    assert status["state"] == "running" and status["done_bytes"] == 1000 and 0 < status["fraction"] < 1
    assert "Downloading" in downloads.describe("glide-filtered")
    release.set()
    while downloads.status("glide-filtered")["state"] == "running" and time.time() < deadline:
        time.sleep(0.01)
    assert downloads.status("glide-filtered")["state"] == "done"


def test_handler_errors_become_clear_gradio_errors():
    import gradio as gr

    from demo.widgets import user_errors

    @user_errors
    def bad_input():
        raise InputError("the prompt is empty: describe the image to make")

    @user_errors
    def full():
        raise QueueFull("The queue is full (3 requests waiting): please try again in a minute.")

    @user_errors
    def greedy():
        raise RateLimited("This server makes at most 2 images a minute per user and you asked for 2 in the last "
                          "minute: try again in 40 s.")

    @user_errors
    def bug():
        raise KeyError("internal detail")

    @user_errors
    def gen():
        yield 1
        raise InputError("<b>bold</b> input")

    for fn, text, title in [(bad_input, "prompt is empty", "check the input"), (full, "queue is full", "Queue full"),
                            (greedy, "try again in 40 s", "Too many images this minute"),
                            (bug, "Internal error (logged): KeyError", "Internal error")]:
        with pytest.raises(gr.Error, match=re.escape(text)) as info:
            fn()
        assert title in info.value.title and "internal detail" not in info.value.message
    with pytest.raises(gr.Error, match="&lt;b&gt;"):  # echoed input is never rendered as HTML
        list(gen())


# ---------------------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module", params=["local", "ray"])
def server(request):
    """The demo server, on each backend: every test below must pass on both (the Ray one attaches to the
    session's local Ray Serve application, two CPU replicas)."""
    from demo.testing import missing_weights, shared_server

    if missing_weights():
        pytest.skip(missing_weights())
    if request.param == "ray":
        return shared_server("--backend", "ray", "--ray-address", request.getfixturevalue("ray_cluster"))
    return shared_server()


@pytest.fixture(autouse=True)
def no_handler_fails(request):
    """Every test that talks to the server leaves its count of handler failures (bugs, not bad input) where it
    found it: what a test sends is reported to it, never crashes a handler."""
    if "server" not in request.fixturenames:
        yield
        return
    from demo.testing import internal_errors

    server = request.getfixturevalue("server")
    before = internal_errors(server)
    yield
    assert internal_errors(server) == before, f"a handler failed: see {server.log_path} ('internal error in')"


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def image_of(item) -> Image.Image:
    path = item["image"] if isinstance(item, dict) else item
    return Image.open(path)


def test_api_lists_its_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/inpaint", "/upscale", "/compare"}


def test_upscale(client, tmp_path):
    from gradio_client import handle_file

    Image.new("RGB", (32, 32), (30, 60, 220)).save(tmp_path / "small.png")
    images = client.predict(PROMPT, handle_file(str(tmp_path / "small.png")), seed=5, upsample_steps="2",
                            api_name="/upscale")
    settings = read_settings(image_of(images[0]))
    assert image_of(images[0]).size == (128, 128) and (settings["mode"], settings["seed"]) == ("upsample", 5)
    assert images[0]["caption"] == "seed 5 · upsampled: ddim 2 steps"


def test_generate(client):
    images = client.predict(PROMPT, seed=11, batch_size=2, **FAST, api_name="/generate")
    assert len(images) == 2
    for i, item in enumerate(images):
        image = image_of(item)
        assert image.size == (128, 128)
        settings = read_settings(image)
        assert settings["prompt"] == PROMPT and settings["seed"] == 11 + i and settings["model"] == "shapes"
        # Unset, the sampler and upsampler steps are the model's defaults.
        assert settings["sampler"] == FAMILIES["shapes"].default_sampler and settings["guidance"] == "classifier-free"
        assert settings["guidance_params"] == {"guidance_scale": 3.0, "interval": ""} and settings["steps"] == 2
        assert settings["upsample_sampler"] == FAMILIES["shapes"].default_upsample_sampler
        # What computed it: the server's automatic choice (on Ray, the replica's own).
        assert settings["device"] == "cpu" and settings["dtype"] in ("float32", "bfloat16")
    # The upsampler's step rule can be chosen too.
    ddpm = client.predict(PROMPT, seed=11, **FAST, upsample_sampler="ddpm", api_name="/generate")
    assert read_settings(image_of(ddpm[0]))["upsample_sampler"] == "ddpm"
    # Without upsampling the images are the base model's; only the prompt is required.
    base = client.predict(PROMPT, upsample=False, steps=2, api_name="/generate")
    assert image_of(base[0]).size == (32, 32) and read_settings(image_of(base[0]))["seed"] >= 0


def test_generate_with_deep_cache(client):
    images = client.predict(PROMPT, seed=4, steps=4, upsample_steps="4", deep_cache=3, upsample_deep_cache=2,
                            api_name="/generate")
    settings = read_settings(image_of(images[0]))
    assert image_of(images[0]).size == (128, 128)
    assert (settings["deep_cache"], settings["upsample_deep_cache"]) == (3, 2)


def test_inpaint(client, tmp_path):
    Image.new("RGB", (150, 100), (30, 60, 220)).save(tmp_path / "image.png")
    mask = Image.new("L", (30, 40), 0)   # another size and shape than the picture's: resized to it
    mask.paste(255, (0, 0, 15, 40))      # white = replace the left half
    mask.save(tmp_path / "mask.png")
    from gradio_client import handle_file

    images = client.predict(PROMPT, handle_file(str(tmp_path / "image.png")), handle_file(str(tmp_path / "mask.png")),
                            seed=3, **FAST, api_name="/inpaint")
    image = image_of(images[0])
    assert image.size == (150, 100)   # the whole picture, the edit put back
    assert read_settings(image)["mode"] == "inpaint"
    # The kept right half is the input's blue.
    right = np.asarray(image.convert("RGB"), dtype=int)[:, 75:]
    assert (right == [30, 60, 220]).all()


def test_inpaint_and_upscale_with_plain_paths_say_to_use_handle_file(client, tmp_path):
    from gradio_client.exceptions import AppError

    Image.new("RGB", (64, 64)).save(tmp_path / "image.png")
    with pytest.raises(AppError, match=re.escape("image is a plain string")):
        client.predict(PROMPT, str(tmp_path / "image.png"), str(tmp_path / "image.png"), **FAST, api_name="/inpaint")
    with pytest.raises(AppError, match=re.escape("image is a plain string")):
        client.predict(PROMPT, str(tmp_path / "image.png"), api_name="/upscale")


def test_compare(client):
    images, scores, grid = client.predict(PROMPT, seed=5, steps=2, sweep="1, 4", seeds=2, api_name="/compare")
    rows = scores["rows"]
    # clip and classifier-free at 1, 3 (their own) and 4; unguided once: each over seeds 5 and 6.
    assert [(r["guidance"], r["scale"]) for r in rows] == [
        ("clip", 1.0), ("clip", 3.0), ("clip", 4.0), ("classifier-free", 1.0), ("classifier-free", 3.0),
        ("classifier-free", 4.0), ("none", None)]
    assert scores["seeds"] == [5, 6] and all(r["seeds"] == [5, 6] for r in rows)
    assert len(images) == 2 * len(rows)
    for item, row_image in zip(images, [i for r in rows for i in r["images"]]):
        assert image_of(item).size == (32, 32)
        assert -1 <= row_image["clip_score"] <= 1 and set(row_image["checker"]) >= {"all", "background", "shapes"}
    assert images[0]["caption"].startswith("CLIP guidance · scale 1 · seed 5")
    for row in rows:
        assert row["fidelity"]["text"] and row["spread"]["text"] and row["seconds"] > 0
    assert sum(r["best"] for r in rows) <= 1 and scores["verdict"] and "★" in scores["legend"]
    assert read_settings(Image.open(grid))["mode"] == "compare"
    _, old_style, _ = client.predict(PROMPT, 5, 2, api_name="/compare")   # positional clients keep working
    assert old_style["seeds"] == [5, 6, 7, 8]   # four seeds when not told


@pytest.mark.parametrize("endpoint,args,kwargs,message", [
    ("/generate", ["   "], FAST, "prompt is empty"),
    ("/generate", [PROMPT], dict(steps=100000), "steps must be between 1 and 250"),
    ("/generate", [PROMPT], dict(batch_size=500, **FAST), "batch_size must be between 1 and 8"),
    ("/generate", [PROMPT], dict(seed=-7, **FAST), "seed must be between -1"),
    ("/generate", [PROMPT], dict(guidance_scale=1e9, **FAST), "guidance_scale=1000000000.0 is out of range"),
    ("/generate", [PROMPT], dict(plugin_params='{"foo": 1}', **FAST), "has a parameter 'foo'"),
    ("/generate", [PROMPT], dict(plugin_params="{oops", **FAST), "must be a JSON object"),
    ("/generate", [PROMPT], dict(upsample_steps="banana", steps=2), "upsample_steps must be a number of steps from 1 to 250"),
    ("/generate", [PROMPT], dict(upsample_steps="10,-3", steps=2), "upsample_steps must be a number of steps from 1 to 250"),
    ("/generate", [PROMPT], dict(upsample_sampler="euler", **FAST), "upsample_sampler: unknown step rule 'euler'"),
    ("/generate", [PROMPT], dict(model="glide-filtered", **FAST), "not downloaded yet"),
    ("/generate", [PROMPT], dict(model="nope", **FAST), "unknown model 'nope'"),
    ("/generate", [PROMPT], dict(deep_cache=11, **FAST), "deep_cache must be between 0 and 10"),
    ("/compare", [""], dict(steps=2), "prompt is empty"),
    ("/compare", [PROMPT], dict(steps=2, sweep="1, 2, 3, 4, 5, 6, 7"), "at most 6 scales"),
    ("/compare", [PROMPT], dict(steps=2, sweep="1, lots"), "sweep scale must be a number"),
    ("/compare", [PROMPT], dict(steps=2, seeds=9), "seeds must be between 1 and 8"),
])
def test_bad_inputs_get_clear_errors(client, endpoint, args, kwargs, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(*args, **kwargs, api_name=endpoint)


@pytest.mark.parametrize("image,mask,message", [
    (("RGB", (64, 64)), ("L", (64, 64), 0), "mask is empty"),
    ("not an image", ("L", (64, 64), 255), "could not be read as a picture"),
    (("RGB", (64, 64)), "not an image", "mask could not be read"),
    (("RGB", (5000, 8)), ("L", (5000, 8), 255), "at most 4096 pixels a side"),
])
def test_bad_inpaint_inputs_get_clear_errors(client, tmp_path, image, mask, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    paths = []
    for name, spec in (("image", image), ("mask", mask)):
        path = tmp_path / f"{name}.png"
        if isinstance(spec, str):
            path.write_text(spec)
        else:
            Image.new(spec[0], spec[1], *spec[2:]).save(path)
        paths.append(handle_file(str(path)))
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(PROMPT, *paths, **FAST, api_name="/inpaint")


def test_eight_concurrent_clients_get_their_own_images_in_batched_runs(server):
    """8 users at once: each gets an image for its own prompt, and they share sampling runs."""
    from gradio_client import Client

    from demo.testing import as_user, runs_in

    prompts = [f"a small {c} circle on the left on a blue background"
               for c in ("red", "green", "yellow", "white", "black", "purple", "orange", "red")]
    runs_before = runs_in(server)
    clients = [Client(server.url, verbose=False, **as_user(i)) for i in range(len(prompts))]
    barrier, results, errors = threading.Barrier(len(prompts)), {}, []

    def user(i):
        try:
            barrier.wait(30)
            results[i] = clients[i].submit(prompts[i], **FAST, api_name="/generate").result(timeout=120)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors and len(results) == len(prompts)
    seeds = set()
    for i, images in results.items():
        image = image_of(images[0])
        settings = read_settings(image)
        assert image.size == (128, 128) and settings["prompt"] == prompts[i]
        seeds.add(settings["seed"])
    assert len(seeds) == len(prompts)  # random seeds: every user got a different image
    runs = runs_in(server) - runs_before
    assert 0 < runs < len(prompts), f"{runs} sampling runs for {len(prompts)} simultaneous requests"


@pytest.mark.parametrize("argv,message", [
    (["--device", "bogus"], "--device: bad device 'bogus'"),
    (["--max-batch", "100"], "--max-batch must be at most 64"),
    (["--device", "cpu", "--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
])
def test_the_server_refuses_at_start_what_it_could_never_serve(argv, message, capsys):
    from demo.app import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- UI helpers
def test_the_examples_are_sentences_of_the_shapes_grammar():
    from demo.context import EXAMPLES
    from glide.data.shapes import parse_caption

    assert all(parse_caption(e) is not None for e in EXAMPLES)


def test_out_of_grammar_notice_only_for_families_with_a_grammar():
    from demo.widgets import grammar_notice, grammar_words

    assert "cannot draw" in grammar_notice("a corgi wearing a bow tie", "shapes")
    assert grammar_notice(PROMPT, "shapes") == "" and grammar_notice("", "shapes") == ""
    assert grammar_notice("a corgi wearing a bow tie", "glide-filtered") == ""
    words = grammar_words("shapes")
    for word in ("orange", "triangle", "little", "near the top", "background"):
        assert word in words
    assert grammar_words("glide-filtered") == ""


def test_tradeoff_view_marks_the_chosen_scales_or_says_there_is_no_measurement(tmp_path, monkeypatch):
    import dataclasses

    from demo import tabs

    point = {"fidelity": {"rate": 0.9, "low": 0.85, "high": 0.94, "n": 160}, "diversity": 1.0, "realism_error": 4.0}
    report = {"prompts": 40, "seeds": 4, "date": "today", "command": "python -m glide.eval shapes --tradeoff",
              "settings": {"sampler": "dpm++2m", "steps": 10}, "unguided_is_scale": {"classifier-free": 1.0, "clip": 0.0},
              "points": [{**point, "strategy": "none", "scale": None},
                         {**point, "strategy": "classifier-free", "scale": 4.0, "realism_error": 8.0},
                         {**point, "strategy": "clip", "scale": 10.0, "diversity": 0.5}]}
    path = tmp_path / "EVAL_TRADEOFF.json"
    path.write_text(json.dumps(report))
    monkeypatch.setitem(FAMILIES, "shapes", dataclasses.replace(FAMILIES["shapes"], tradeoff_report=path))
    figure, note = tabs.tradeoff_view("shapes", 5.0, 2.5)
    assert "40 two-shape prompts x 4 seeds" in note
    stars = [(line.get_xdata()[0], line.get_ydata()[0]) for axis in figure.axes for line in axis.get_lines()
             if line.get_marker() == "*"]
    # classifier-free 2.5: halfway from 1 to 4 (realism 4 -> 8); CLIP 5: halfway from 0 to 10 (diversity 1 -> 0.5).
    assert sorted(stars) == sorted([(1.0, 90.0), (0.75, 90.0), (6.0, 90.0), (4.0, 90.0)])
    figure, note = tabs.tradeoff_view("glide-filtered", 5.0, 2.5)
    assert figure is None and "No trade-off measurement" in note


def test_one_progress_for_the_whole_job():
    from demo.widgets import JobProgress, stage_title
    from glide.serving.batches import run_label

    bar = JobProgress([10, 8])
    bar.update("base", 0, 10)
    assert (bar.done, bar.total) == (1, 18)
    bar.update("base", 9, 10)
    bar.update("upsample", 0, 8)
    assert bar.done == 11 and bar.describe().startswith("61.1% · ") and "elapsed" in bar.describe()
    bar.update("upsample", 7, 8)
    assert bar.done == bar.total == 18 and "left" not in bar.describe()
    runs = JobProgress([5] * 3)   # a comparison: each run's stage has its own label
    for run in range(3):
        for step in range(5):
            runs.update(run_label(("clip", {"guidance_scale": 3.0}), run, 3, "base"), step, 5)
    assert runs.done == runs.total == 15
    assert (stage_title(run_label(("classifier-free", {"guidance_scale": 3.0}), 1, 15, "base"))
            == "Classifier-free guidance, scale 3 — run 2 of 15 (base model)")
    assert stage_title("upsample") == "Upsampler"


def test_the_whole_job_bar_plans_every_stage_from_the_settings():
    from demo.widgets import planned_steps
    from glide.settings import ComparisonSettings, GenerationSettings

    settings = GenerationSettings.create(PROMPT, seed=0, steps=7, upsample_steps="fast27")
    assert planned_steps(Job(Generate(settings))) == [7, 27]
    compared = ComparisonSettings.create(PROMPT, seed=0, steps=5, sweep="1, 2")   # 3 strategies, 2 swept twice
    assert planned_steps(Job(Compare(compared))) == [5] * 7
