"""The Ray Serve backend on the CPU: a local Ray (2 CPUs) with two replicas of the shapes family.

The gradio_client tests of tests/test_demo.py run against both backends (concurrent clients batched
included); here: the same image on both backends, cancelling one request of a shared batch, a batch whose
every request is cancelled stopping, a replica killed mid-request (its request retried on another), and
`glide serve --status`. Sampling is short (a few steps) except where a run must outlast what the test does to it.
"""
import logging
import re
import signal
import time

import numpy as np
import pytest
import torch
from fakes import FakeServe

from glide.errors import Cancelled, ClusterUnavailable
from glide.serving.jobs import Generate, Job
from glide.settings import GenerationSettings

PROMPT = "a small red circle on the left on a blue background"

ray_serve = pytest.importorskip("glide.serving.ray_serve", reason="pip install 'ray[serve]' (the ray extra)")


@pytest.fixture(scope="module")
def backend(ray_cluster):
    return ray_serve.RayBackend(ray_serve.handle())


def submit(backend, settings: GenerationSettings, previews=False) -> Job:
    return backend.submit(Job(Generate(settings), previews=previews))


def local_images(settings: GenerationSettings):
    """The same settings on the local pipeline, on one thread and in float32 as each replica runs."""
    from glide.pipeline import load_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return load_pipeline(settings.model, device="cpu", dtype="float32").run(settings).images
    finally:
        torch.set_num_threads(threads)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=int)


def wait_for_progress(job: Job, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while job._events.empty():
        assert time.time() < deadline and not job.done.is_set(), "the job never started sampling"
        time.sleep(0.05)


def test_same_seed_and_settings_give_the_same_image_on_both_backends(backend):
    settings = GenerationSettings.create(PROMPT, seed=21, steps=4, upsample_steps=3)
    remote = submit(backend, settings).outcome(timeout=120)
    assert remote.settings == [{**s, "device": "cpu", "dtype": "float32"} for s in settings.per_image()]
    assert np.array_equal(pixels(remote.images[0]), pixels(local_images(settings)[0]))   # bitwise


def test_cancelling_one_request_of_a_shared_batch_leaves_the_others_their_images(backend):
    settings = GenerationSettings.create(PROMPT, seed=0, steps=40, upsample_steps=20)
    jobs = [submit(backend, settings.with_items([PROMPT], [seed]), previews=True) for seed in (31, 32, 33)]
    wait_for_progress(jobs[1])
    jobs[1].cancel()
    with pytest.raises(Cancelled):
        jobs[1].outcome(timeout=120)
    for job, seed in ((jobs[0], 31), (jobs[2], 33)):
        got = job.outcome(timeout=180).images[0]
        want = local_images(settings.with_items([PROMPT], [seed]))[0]
        # Exactly their images: a batch's arithmetic sums in another order than one image's (<= 1 level).
        assert np.abs(pixels(got) - pixels(want)).max() <= 1


def replicas() -> dict:
    return {r["replica"]: r for r in ray_serve.status(samples=24)["replicas"]}


def test_a_run_whose_every_request_is_cancelled_stops_between_steps(backend):
    settings = GenerationSettings.create(PROMPT, seed=50, steps=250, upsample_steps=250)   # a minute or more
    jobs = [submit(backend, settings.with_items([PROMPT], [seed])) for seed in (50, 51)]
    for job in jobs:
        wait_for_progress(job)
    for job in jobs:
        job.cancel()
    deadline = time.time() + 20
    while any(r["running"] for r in replicas().values()):
        assert time.time() < deadline, "a run nobody waits for is still sampling"
        time.sleep(0.2)


def test_a_replica_killed_mid_request_is_retried_on_another(backend, caplog):
    import ray

    caplog.set_level(logging.INFO, logger="glide.serving.ray")
    long = GenerationSettings.create(PROMPT, seed=70, steps=120, upsample_steps=60)
    victim_job = submit(backend, long, previews=True)
    wait_for_progress(victim_job)
    # Serve routes each probe to the less busy of two replicas, so a round of probes may miss the busy one.
    deadline = time.time() + 30
    running = []
    while not running:
        assert time.time() < deadline, "no replica reports the run"
        running = [name for name, r in replicas().items() if r["running"]]
    (killed,) = running
    others = [submit(backend, GenerationSettings.create(PROMPT, seed=80 + i, steps=3, upsample_steps=2))
              for i in range(3)]
    ray.kill(ray.get_actor(killed, namespace="serve"))
    # The killed replica's request is sent again, to a replica alive: its user gets the image, made there.
    result = victim_job.outcome(timeout=240)
    assert result.images[0].size == (128, 128) and result.settings[0]["seed"] == 70
    assert f"replica died serving job {victim_job.id}" in caplog.text
    (run,) = re.findall(rf"job {victim_job.id}: result from run (\S+)", caplog.text)
    assert not run.startswith(killed + ":"), run
    assert all(job.outcome(timeout=240).images for job in others)
    deadline = time.time() + 60            # Serve brings the replica count back
    while ray_serve.status(samples=1)["deployments"]["GlideReplica"]["replicas"].get("RUNNING") != 2:
        assert time.time() < deadline, ray_serve.status(samples=1)
        time.sleep(0.5)


def test_serve_status_from_the_command_line(ray_cluster, capsys):
    import json

    from glide.cli import main

    assert main(["serve", "--ray-address", ray_cluster, "--status"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["deployments"]["GlideReplica"]["status"] == "HEALTHY"
    assert {r["device"] for r in shown["replicas"]} == {"cpu"} and all(r["threads"] == 1 for r in shown["replicas"])
    assert {r["dtype"] for r in shown["replicas"]} == {"float32 (asked for)"}   # the test cluster's (conftest)


def test_the_front_end_sends_jobs_to_serve_fairly(ray_cluster):
    """The local backend's fairness holds in front of Serve: A's queue does not hold B's one job."""
    fair = ray_serve.RayBackend(ray_serve.handle(), in_flight=1, max_per_user=20)
    quick = GenerationSettings.create(PROMPT, seed=0, steps=2, upsample=False)

    def job(seed, session):
        # in_flight=1: one job at a time reaches Serve, so none share a run
        return fair.submit(Job(Generate(quick.with_items([PROMPT], [seed])), session=session))

    a_jobs = [job(200 + i, "A") for i in range(6)]
    b_job = job(300, "B")
    assert b_job.ahead() <= 1
    b_job.outcome(timeout=120)
    assert not a_jobs[2].done.is_set()       # B went right after A's first (or second, if it was already sent)
    assert all(j.outcome(timeout=120) for j in a_jobs)


def test_a_cluster_gone_is_a_clear_message():
    """Not the request's fault: the user reads that the cluster cannot be reached, the operator the cause."""
    from ray.exceptions import RaySystemError

    class GoneHandle(FakeServe):
        def remote(self, request):
            raise RaySystemError("the GCS at 10.0.0.1:6379 is unreachable")

    settings = GenerationSettings.create(PROMPT, seed=0, steps=2, upsample=False)
    job = submit(ray_serve.RayBackend(GoneHandle()), settings)
    with pytest.raises(ClusterUnavailable, match="cannot be reached right now"):
        job.outcome(timeout=30)


def test_the_ui_restarting_leaves_the_application_serving(ray_cluster):
    from demo.testing import start_server

    ui = start_server("--backend", "ray", "--ray-address", ray_cluster)
    ui.process.send_signal(signal.SIGTERM)
    assert ui.process.wait(60) == 0
    assert ray_serve.status(samples=1)["application"] == "RUNNING"
    settings = GenerationSettings.create(PROMPT, seed=4, steps=2, upsample=False)
    assert submit(ray_serve.RayBackend(ray_serve.handle()), settings).outcome(timeout=120).images


def test_the_cli_runs_a_job_on_either_backend(ray_cluster, tmp_path):
    from PIL import Image
    from test_cli import glide, ok

    args = ["generate", PROMPT, "--steps", 3, "--no-upsample", "--seed", 8]
    (remote,) = ok(glide(*args, "--backend", "ray", "--ray-address", ray_cluster, "--out", "ray", cwd=tmp_path))
    (local,) = ok(glide(*args, "--dtype", "float32", "--out", "local", cwd=tmp_path))   # as the test cluster runs
    a, b = (pixels(Image.open(tmp_path / p)) for p in (remote, local))
    assert np.abs(a - b).max() <= 1        # one thread per replica here, the test process's threads there
    compared = ok(glide("compare", PROMPT, "--steps", 2, "--strategies", "none,classifier-free", "--backend", "ray",
                        "--ray-address", ray_cluster, cwd=tmp_path))
    assert [line.split()[0] for line in compared[1:3]] == ["none", "classifier-free"]


def healthz(server):
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_turns_unhealthy_when_the_ray_application_is_gone(ray_cluster, ray_serve_config):
    """The UI's /healthz on Ray: 200 with the replicas while the application runs, 503 saying why once it is
    deleted, then healthy and serving again once it is deployed again (last here: it redeploys the session's
    application)."""
    from gradio_client import Client
    from ray import serve

    from demo.testing import shared_server
    from glide.serving.options import APP_NAME

    server = shared_server("--backend", "ray", "--ray-address", ray_cluster)
    status, health = healthz(server)
    assert status == 200 and health["healthy"] and health["backend"] == "ray", health
    assert health["application"] == "RUNNING" and health["replicas_running"] == 2 and health["replicas"]
    serve.delete(APP_NAME)
    try:
        status, health = healthz(server)
        assert status == 503 and not health["healthy"], health
        assert any("no glide application" in problem for problem in health["problems"]), health
    finally:
        ray_serve.deploy(ray_serve_config)
    deadline = time.time() + 120          # the new replicas start and answer the probes
    while healthz(server)[0] != 200:
        assert time.time() < deadline, healthz(server)
        time.sleep(0.5)
    images = Client(server.url, verbose=False).predict(PROMPT, steps=2, upsample=False, api_name="/generate")
    assert len(images) == 1
