"""A shared box's bad days, by fault injection on the CPU: out of memory, greedy users, restarts.

Out of memory: a model wrapper that fails to allocate above a batch size; the run is split until it
fits, and the images are the ones an unfailed run of the same seeds makes. Greedy users: jobs are
taken round-robin across sessions, with a cap on each session's waiting jobs. Restarts: draining the
scheduler, and SIGTERM to a real `app.py` during a run.
"""
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from fakes import Tag

from glide.errors import OutOfDeviceMemory, QueueFull, ServerRestarting
from glide.pipeline import load_pipeline
from glide.serving.batches import run_batch
from glide.serving.jobs import Generate, Job
from glide.serving.local import LocalBackend
from glide.settings import GenerationSettings

PROMPT = "a small red circle on the left on a blue background"



# ---------------------------------------------------------------------------------------------- greedy users
class Recorder:
    """Runs nothing: records the order in which jobs ran; the job whose payload is "block" holds the worker."""

    def __init__(self):
        self.order, self.gate = [], threading.Event()

    def __call__(self, batch, report, should_stop):
        if batch.jobs[0].payload.label == "block":
            assert self.gate.wait(10)
        self.order += [job.payload.label for job in batch.jobs]
        return [job.payload.label for job in batch.jobs]


def job(payload, session, key=None):
    return Job(Tag(payload, key=key), session=session)


def test_jobs_are_taken_round_robin_across_sessions():
    runner = Recorder()
    sched = LocalBackend(runner=runner, workers=1, max_per_user=20)
    assert sched.submit(job("block", "other")).started.wait(5)
    a_jobs = [sched.submit(job(f"A{i}", "A")) for i in range(10)]
    b_job = sched.submit(job("B0", "B"))
    assert b_job.ahead() == 1            # after A's first, not after all ten
    runner.gate.set()
    b_job.outcome(timeout=10)
    a_jobs[2].outcome(timeout=10)
    assert runner.order.index("B0") < runner.order.index("A2")
    assert runner.order[:4] == ["block", "A0", "B0", "A1"]


def test_one_session_may_only_have_a_few_jobs_waiting():
    runner = Recorder()
    sched = LocalBackend(runner=runner, workers=1, max_per_user=3)
    sched.submit(job("block", "other"))
    for i in range(3):
        sched.submit(job(f"A{i}", "A"))
    with pytest.raises(QueueFull, match="You already have 3 requests waiting"):
        sched.submit(job("A3", "A"))
    sched.submit(job("B0", "B"))          # another user is not held to A's cap
    runner.gate.set()


def test_draining_finishes_running_jobs_and_tells_the_waiting_ones():
    runner = Recorder()
    sched = LocalBackend(runner=runner, workers=1)
    running = sched.submit(job("block", "A"))
    waiting = sched.submit(job("W", "B"))
    assert running.started.wait(5)
    threading.Timer(0.3, runner.gate.set).start()
    sched.drain(grace_s=5)
    assert running.outcome(timeout=1) == "block"          # finished within the grace period
    with pytest.raises(ServerRestarting, match="restarting"):
        waiting.outcome(timeout=1)
    with pytest.raises(ServerRestarting):
        sched.submit(job("late", "C"))


# ---------------------------------------------------------------------------------------------- out of memory
class FailsAbove(torch.nn.Module):
    """The model, failing to allocate whenever a forward holds more than `limit` rows (CUDA's error)."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit, self.calls = model, limit, []
        self.tokenizer, self.text_ctx = model.tokenizer, model.text_ctx

    def encode_text(self, *args, **kwargs):
        return self.model.encode_text(*args, **kwargs)

    def forward(self, x, *args, **kwargs):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return self.model(x, *args, **kwargs)


@pytest.fixture
def failing_pipeline(monkeypatch):
    from glide.pipeline import Pipeline

    pipe = Pipeline(load_pipeline("shapes").family)
    pipe._components = dict(load_pipeline("shapes")._components)
    model, diffusion = pipe.component("base")
    wrapper = FailsAbove(model, limit=4)     # classifier-free doubles the batch: two images fit, three do not
    pipe._components["base"] = (wrapper, diffusion)
    return pipe, wrapper


def test_a_run_out_of_memory_is_split_and_makes_the_same_images(failing_pipeline):
    pipe, wrapper = failing_pipeline
    settings = GenerationSettings.create([PROMPT] * 2 + ["a big green square at the top on a black background"] * 3,
                                         seed=[5, 6, 7, 8, 9], steps=3, upsample=False)
    jobs_of = [2, 3]
    payloads = [Generate(settings.with_items(settings.prompts[:2], settings.seeds[:2])),
                Generate(settings.with_items(settings.prompts[2:], settings.seeds[2:]))]
    out = run_batch(lambda model: pipe, payloads, lambda *a: None)
    assert [len(o.images) for o in out] == jobs_of and max(wrapper.calls) > 4       # it did fail, then split
    want = load_pipeline("shapes").run(settings.with_items(settings.prompts[:2], settings.seeds[:2])).images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out[0].images, want))
    assert [s["seed"] for o in out for s in o.settings] == [5, 6, 7, 8, 9]


def test_an_image_that_never_fits_fails_only_its_request(failing_pipeline):
    pipe, wrapper = failing_pipeline
    wrapper.limit = 0                                  # nothing fits
    settings = GenerationSettings.create(PROMPT, seed=1, steps=2, upsample=False)
    (out,) = run_batch(lambda model: pipe, [Generate(settings)], lambda *a: None)
    assert isinstance(out, OutOfDeviceMemory) and "does not fit" in str(out)


# ---------------------------------------------------------------------------------------------- restarts
@pytest.mark.slow
def test_sigterm_during_a_run(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from demo.testing import missing_weights, start_server

    if missing_weights():
        pytest.skip(missing_weights())
    outputs = tmp_path / "outputs"
    server = start_server("--outputs", str(outputs), "--shutdown-grace", "1")
    client = Client(server.url, verbose=False)
    long = client.submit(PROMPT, seed=1, steps=250, upsample_steps="250", api_name="/generate")
    deadline = time.time() + 60
    while "generate run:" not in server.log():
        assert time.time() < deadline
        time.sleep(0.1)
    server.process.send_signal(signal.SIGTERM)
    # A run of minutes outlives the second of grace: it is stopped, and its user told why.
    with pytest.raises(AppError, match="restarting"):
        long.result(timeout=60)
    assert server.process.wait(60) == 0, server.log()[-2000:]
    assert "Traceback" not in server.log()
    leftovers = [p.name for p in outputs.rglob("*") if p.suffix != ".png" or p.name.startswith(".")]
    assert not leftovers, leftovers
    assert not os.path.exists(outputs) or all(p.stat().st_size > 0 for p in outputs.rglob("*.png"))


def test_one_user_with_five_sessions_is_served_as_one():
    """Fairness and the cap count users, not sessions: five tabs of A wait behind B's one job like one tab."""
    runner = Recorder()
    sched = LocalBackend(runner=runner, workers=1, max_per_user=5)
    assert sched.submit(job("block", "other")).started.wait(5)
    a_jobs = [sched.submit(Job(Tag(f"A{i}"), session=f"tab{i}", user="alice")) for i in range(5)]
    with pytest.raises(QueueFull, match="You already have 5 requests waiting"):
        sched.submit(Job(Tag("A5"), session="tab5", user="alice"))
    b_job = sched.submit(Job(Tag("B0"), session="tab9", user="bob"))
    assert b_job.ahead() == 1            # after alice's first, not after her five sessions' jobs
    runner.gate.set()
    for j in a_jobs + [b_job]:
        j.outcome(timeout=10)
    assert runner.order[:3] == ["block", "A0", "B0"]


def test_counters_move_after_a_job_and_the_rate_limit_refuses_in_words():
    from prometheus_client import REGISTRY

    from glide.errors import RateLimited

    def ok_count():
        return REGISTRY.get_sample_value("glide_requests_total", {"kind": "generate", "outcome": "ok"}) or 0

    runner = Recorder()
    sched = LocalBackend(runner=runner, workers=1, images_per_minute=2)
    before = ok_count()
    sched.submit(Job(Tag("A0"), user="alice")).outcome(timeout=10)
    assert ok_count() == before + 1
    sched.submit(Job(Tag("A1"), user="alice")).outcome(timeout=10)
    with pytest.raises(RateLimited, match="at most 2 images a minute per user"):
        sched.submit(Job(Tag("A2"), user="alice"))
    sched.submit(Job(Tag("B0"), user="bob")).outcome(timeout=10)    # another user has a minute of their own
