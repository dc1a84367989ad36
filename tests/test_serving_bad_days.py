"""Serving's bad days, each injected: a run that never stops, a slow disk at shutdown, a cluster that answers
slowly, an outage, a client that leaves, an address book that grows, a picture that unpacks to gigabytes, a
forged address, one user who asks ten times at once, on either backend.

The Ray backend's front end is tested here on a stand-in for Serve's handle (no cluster: it is the front's
own logic), and on a real local Ray where the behaviour depends on Serve (marked slow).
"""
import base64
import io
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import FakeServe, Tag
from PIL import Image

from glide.errors import Cancelled, InputError, OutOfDeviceMemory, QueueFull, ServerRestarting
from glide.serving.fair_queue import FairQueue
from glide.serving.jobs import Generate, Job
from glide.serving.local import LocalBackend

PROMPT = "a small red circle on the left on a blue background"
QUICK = dict(steps=2, upsample=False)


class Stuck:
    """A runner whose run never reaches its next step until `gate` is set (it never asks should_stop)."""

    def __init__(self):
        self.gate, self.running = threading.Event(), threading.Event()

    def __call__(self, batch, report, should_stop):
        self.running.set()
        assert self.gate.wait(60)
        return ["late"] * len(batch.jobs)


# ---------------------------------------------------------------------------------------------- stopping
def test_closing_the_local_backend_ends_its_worker_threads():
    before = set(threading.enumerate())
    backend = LocalBackend(runner=lambda batch, report, should_stop: ["ok"] * len(batch.jobs), workers=3)
    workers = set(threading.enumerate()) - before
    assert len(workers) == 3
    assert backend.submit(Job(Tag("a"))).outcome(timeout=10) == "ok"
    backend.close()
    assert not [t.name for t in workers if t.is_alive()]
    with pytest.raises(ServerRestarting):
        backend.submit(Job(Tag("b")))


def test_a_drain_answers_a_run_that_never_stops_by_its_deadline():
    runner = Stuck()
    backend = LocalBackend(runner=runner, workers=1)
    job = backend.submit(Job(Tag("stuck")))
    assert runner.running.wait(10)
    drain = threading.Thread(target=backend.drain, kwargs=dict(grace_s=0.2, stop_s=0.5), daemon=True)
    drain.start()
    drain.join(30)
    try:
        assert not drain.is_alive(), "the drain waits for a run that never stops"
        with pytest.raises(ServerRestarting):
            job.outcome(timeout=0)
    finally:
        runner.gate.set()
    deadline = time.monotonic() + 10
    while backend.stats()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert isinstance(job.error, ServerRestarting)     # the late result changes nothing: its user was answered


def test_shutdown_waits_until_the_handlers_have_answered_their_users(tmp_path, monkeypatch):
    """A handler's answer (its PNGs written) takes longer than a second on a slow disk: shutdown waits for it."""
    from demo.service import DemoService
    from glide.serving.results import Images
    from glide.settings import GenerationSettings

    settings = GenerationSettings.create(PROMPT, seed=1, **QUICK)
    picture = Image.new("RGB", (8, 8), "red")
    gate = threading.Event()

    def runner(batch, report, should_stop):
        assert gate.wait(10)
        return [Images([picture], [picture], settings.per_image(), 0.1)]

    service = DemoService(device="cpu", backend=LocalBackend(runner=runner), out_dir=tmp_path)
    save = service._save

    def slow_save(*args):
        time.sleep(1.5)
        return save(*args)

    monkeypatch.setattr(service, "_save", slow_save)
    job = service.submit_generate(settings)
    answered = []
    threading.Thread(target=lambda: answered.append(job.outcome()), daemon=True).start()
    threading.Timer(0.2, gate.set).start()           # the run ends within the grace period
    service.shutdown(grace_s=5)
    assert answered, "shutdown returned before the handler had answered its user"
    assert Path(answered[0].images[0]).is_file()


# ---------------------------------------------------------------------------------------------- what /metrics says
def requests_counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("glide_requests_total", {"kind": "generate", "outcome": outcome}) or 0.0


def test_the_servers_own_trouble_is_counted_apart_from_users_mistakes():
    backend = LocalBackend(runner=lambda batch, report, should_stop: [OutOfDeviceMemory("does not fit")])
    before = {outcome: requests_counted(outcome) for outcome in ("server_error", "user_error")}
    with pytest.raises(OutOfDeviceMemory):
        backend.submit(Job(Tag("big"))).outcome(timeout=10)
    assert requests_counted("server_error") == before["server_error"] + 1
    assert requests_counted("user_error") == before["user_error"]
    backend.close()


# ---------------------------------------------------------------------------------------------- what is kept
def test_the_fair_queue_forgets_users_with_nothing_waiting():
    now = [0.0]
    queue = FairQueue(max_pending=10, max_per_user=2, images_per_minute=5, clock=lambda: now[0])
    for i in range(1000):                      # a long day: a thousand addresses, one request each
        job = Job(Tag(i), user=f"address:198.51.100.{i}")
        queue.add(job)
        queue.take([job])
        now[0] += 0.5
    remembered = len(queue._served) + len(queue._asked)
    assert remembered <= 60 / 0.5, remembered      # only the last minute's users, whose images still count
    now[0] += 61
    last = Job(Tag("last"), user="address:203.0.113.1")
    queue.add(last)
    queue.take([last])
    assert len(queue._served) + len(queue._asked) <= 1


# ---------------------------------------------------------------------------------------------- uploads
def png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header says it is `width` x `height` pixels (its data is an 8x8 picture's)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_an_uploads_size_is_checked_from_its_header_before_decoding(tmp_path):
    from demo.imaging import open_upload

    path = tmp_path / "claims-big.png"
    path.write_bytes(png_claiming(5000, 5000))        # decoding it would fail: only its header is read
    with pytest.raises(InputError, match="is 5000x5000 pixels; give one of at most 4096"):
        open_upload(str(path), "image", 4096)
    path.write_bytes(png_claiming(200_000, 200_000))  # past PIL's decompression-bomb limit
    with pytest.raises(InputError, match="more pixels than a picture of at most 4096 pixels a side"):
        open_upload(str(path), "image", 4096)


def test_the_painters_data_urls_are_capped_before_decoding():
    from demo.imaging import decode_data_url

    small = io.BytesIO()
    Image.new("RGB", (16, 16)).save(small, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(small.getvalue()).decode()
    assert decode_data_url(url, "image", 4096).size == (16, 16)
    huge = "data:image/png;base64," + "A" * 40_000_000      # 30 MB once decoded
    with pytest.raises(InputError, match="the image is a file of about 30.0 MB; give one of at most 25.0 MB"):
        decode_data_url(huge, "image", 4096)


# ---------------------------------------------------------------------------------------------- Ray's front end
def ray_front():
    """glide.serving.ray_serve, or a skip where Ray is not installed."""
    return pytest.importorskip("glide.serving.ray_serve", reason="pip install 'ray[serve]'")


def test_a_ray_drain_waits_for_the_cancelled_requests_to_end():
    backend = ray_front().RayBackend(FakeServe(cancel_takes_s=0.3))
    job = backend.submit(Job(Tag("long")))
    assert job.started.wait(10)
    backend.drain(grace_s=0.1)
    assert job.done.is_set(), "the drain returned before the cancelled request had ended"
    with pytest.raises(ServerRestarting):
        job.outcome(timeout=0)
    backend.close()


def test_a_ray_drain_answers_a_request_that_never_ends_by_its_deadline():
    backend = ray_front().RayBackend(FakeServe(ignores_cancel=True))
    job = backend.submit(Job(Tag("stuck")))
    assert job.started.wait(10)
    drain = threading.Thread(target=backend.drain, kwargs=dict(grace_s=0.1, stop_s=0.5), daemon=True)
    drain.start()
    drain.join(30)
    assert not drain.is_alive(), "the drain waits for a request that never ends"
    with pytest.raises(ServerRestarting):
        job.outcome(timeout=0)


def test_the_ray_health_probe_has_one_deadline_in_all(monkeypatch):
    """Each replica answers within the probe's time, but one after another: /healthz answers by its deadline."""
    front = ray_front()

    class Probe:
        def __init__(self, ready_at):
            self.ready_at = ready_at

        def result(self, timeout_s):
            wait = self.ready_at - time.monotonic()
            if wait > timeout_s:
                time.sleep(timeout_s)
                raise TimeoutError
            time.sleep(max(0.0, wait))
            return {"replica": f"r{self.ready_at}", "device": "cpu", "dtype": "float32", "requests": 0,
                    "models": []}

        def cancel(self):
            pass

    sent = time.monotonic()
    probes = iter(Probe(sent + 0.4 * (i + 1)) for i in range(100))
    handle = SimpleNamespace(describe=SimpleNamespace(remote=lambda: next(probes)))
    application = SimpleNamespace(status="RUNNING", deployments={front.DEPLOYMENT: SimpleNamespace(
        replica_states={"RUNNING": 3})})
    monkeypatch.setattr(front, "handle", lambda: handle)
    monkeypatch.setattr(front, "_application", lambda: application)
    backend = front.RayBackend(FakeServe())
    started = time.monotonic()
    health = backend.health(probe_timeout_s=0.5)
    took = time.monotonic() - started
    assert health["healthy"] and len(health["replicas"]) == 1, health      # the one that answered in time
    assert took < 1.5, f"/healthz took {took:.1f} s with a 0.5 s deadline"  # six probes in turn: 2.4 s
    backend.close()


def test_the_ray_front_holds_one_user_to_the_cap_while_their_requests_wait_in_serve():
    """Ten requests within a tenth of a second, which Serve starts only later: those sent to it still count as
    waiting, against the user's cap."""
    backend = ray_front().RayBackend(FakeServe(start_s=2.0), max_per_user=4, in_flight=16)
    admitted, refused = [], []
    for i in range(10):
        try:
            admitted.append(backend.submit(Job(Tag(i), user="address:198.51.100.7")))
        except QueueFull as exc:
            refused.append(str(exc))
        time.sleep(0.01)              # clients a few milliseconds apart: the front sends each on meanwhile
    assert len(admitted) == 4 and len(refused) == 6, refused
    assert all("You already have 4 requests waiting" in r for r in refused)
    for job in admitted:
        job.cancel()
    backend.close()


# ---------------------------------------------------------------------------------------------- the demo served
# `hosted` (tests/conftest.py): the demo served in this process, its backend behind a gate.


@pytest.mark.slow
def test_an_api_request_is_cancelled_when_its_client_goes_away(hosted):
    server = hosted()
    holder = server.client().submit(PROMPT, seed=0, **QUICK, api_name="/generate")   # holds the device
    deadline = time.monotonic() + 60
    while not server.backend.stats()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The client says when its job is being processed: its stream from the server is open then, so killing it
    # is a client going away mid-request (killed earlier, before it ever listened, it would leave nothing to see).
    script = ("import time; from gradio_client import Client; from gradio_client.utils import Status; "
              f"job = Client({server.url!r}, verbose=False).submit({PROMPT!r}, seed=1, steps=2, upsample=False, "
              "api_name='/generate')\n"
              "while job.status().code != Status.PROCESSING: time.sleep(0.05)\n"
              "print('processing', flush=True); time.sleep(600)")
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "processing"
        server.wait_for_queue(1)
    finally:
        client.kill()                          # the client goes away while its request waits
        client.wait(10)
    deadline = time.monotonic() + 60
    while server.backend.stats()["waiting"]:
        assert time.monotonic() < deadline, "the request of a client gone is still waiting for the device"
        time.sleep(0.1)
    server.gate.open.set()
    assert len(holder.result(timeout=120)) == 1
    assert server.gate.users == [server.gate.users[0]]       # only the holder's run was made


@pytest.mark.slow
def test_a_forwarded_address_comes_from_x_forwarded_for_not_x_real_ip(hosted):
    server = hosted("--trusted-proxy", "127.0.0.1")
    client = server.client(headers={"X-Real-IP": "198.51.100.9", "X-Forwarded-For": "198.51.100.4"})
    server.gate.open.set()
    assert len(client.predict(PROMPT, **QUICK, api_name="/generate")) == 1
    assert server.gate.users == ["address:198.51.100.4"]


# ---------------------------------------------------------------------------------------------- both backends
@pytest.fixture(params=["local", "ray"])
def backend_kind(request):
    """"local" (worker threads here) or "ray" (the session's local Ray with two replicas: slow)."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


def test_one_user_asking_ten_times_at_once_meets_the_cap_on_either_backend(backend_kind):
    from glide.serving.backend import BackendOptions, create_backend
    from glide.settings import GenerationSettings

    if backend_kind == "local":
        backend = create_backend(BackendOptions(device="cpu", dtype="float32", max_per_user=4))
    else:
        front = ray_front()
        backend = front.RayBackend(front.handle(), max_per_user=4, in_flight=16)   # 2 replicas x 8 images
    settings = GenerationSettings.create(PROMPT, seed=0, steps=20, upsample=False)   # ~0.6 s a run on a CPU
    admitted, refused = [], []
    for i in range(10):           # ten requests within a tenth of a second, as ten clients would send them
        try:
            admitted.append(backend.submit(Job(Generate(settings.with_items([PROMPT], [i])),
                                               user="address:198.51.100.7")))
        except QueueFull as exc:
            refused.append(str(exc))
        time.sleep(0.01)
    # Four wait (wherever: here, or on Ray in Serve's queue); a fifth may have started meanwhile.
    assert 4 <= len(admitted) <= 5 and len(admitted) + len(refused) == 10, refused
    assert all("You already have 4 requests waiting" in r for r in refused)
    for job in admitted:
        try:
            assert job.outcome(timeout=240).images
        except Cancelled:
            pytest.fail("an admitted request was cancelled")
    backend.close()
