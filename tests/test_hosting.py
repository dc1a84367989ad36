"""Hosting on a shared box: who a user is, the settings file, /healthz and /metrics, a reverse proxy.

In-process: users from logins or addresses (forwarded headers only from trusted proxies), the TOML
settings file and the flags' checks. Then the demo served in this process (uvicorn in a thread) on
the shapes model, its device held by a gate so that a queue can be built on purpose: one user's five
sessions are one share of it, /metrics moves after a generate, the rate limit refuses in words. Last,
the demo under `--root-path /glide` behind a real nginx (Debian's package, started here, unprivileged).
The Ray side of /healthz is in tests/test_ray_serve.py.
"""
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from demo.users import trusted_networks, user_of
from glide.errors import UserError

PROMPT = "a small red circle on the left on a blue background"
QUICK = dict(steps=2, upsample=False)
NGINX = "/usr/sbin/nginx"


# ---------------------------------------------------------------------------------------------- who a user is
def request(host="203.0.113.7", username=None, **headers):
    return SimpleNamespace(username=username, client=SimpleNamespace(host=host), headers=headers,
                           session_hash="s1")


def test_a_user_is_the_login_else_the_address():
    assert user_of(request(username="alice")) == "user:alice"
    assert user_of(request(username="alice", host="10.0.0.9")) == "user:alice"   # wherever she logs in from
    assert user_of(request()) == "address:203.0.113.7"
    assert user_of(None) is None


def client_address(peer, headers, trusted=()):
    """The client address a request from `peer` with `headers` reaches the demo's handlers with."""
    import fastapi
    from fastapi.testclient import TestClient

    from demo.server import trust_proxies

    app = fastapi.FastAPI()
    trust_proxies(app, trusted)

    @app.get("/who")
    def who(request: fastapi.Request):
        return request.client.host

    with TestClient(app, client=(peer, 50000)) as client:
        return client.get("/who", headers=headers).json()


def test_forwarded_addresses_count_only_from_trusted_proxies():
    proxy = trusted_networks(["127.0.0.1", "10.1.0.0/16"])
    forwarded = {"x-forwarded-for": "198.51.100.4"}
    assert client_address("127.0.0.1", forwarded) == "127.0.0.1"                 # nobody trusted: the peer
    assert client_address("203.0.113.7", forwarded, proxy) == "203.0.113.7"       # not from a trusted proxy
    assert client_address("127.0.0.1", forwarded, proxy) == "198.51.100.4"
    # X-Real-IP is not read: a proxy that passes the client's own header through would let anyone forge it.
    assert client_address("127.0.0.1", {"x-real-ip": "198.51.100.5", **forwarded}, proxy) == "198.51.100.4"
    # The last hop that is not a trusted proxy: what came before it is whatever the client sent.
    chain = {"x-forwarded-for": "1.2.3.4, 198.51.100.4, 10.1.2.3"}
    assert client_address("127.0.0.1", chain, proxy) == "198.51.100.4"
    assert client_address("127.0.0.1", {}, proxy) == "127.0.0.1"
    assert not parse().trusted_proxy                       # the demo trusts no proxy unless told
    with pytest.raises(UserError, match="--trusted-proxy 'proxy.local' is not an IP address"):
        trusted_networks(["proxy.local"])


# ---------------------------------------------------------------------------------------------- flags and the file
def parse(*argv):
    from demo.app import parse_args

    return parse_args([str(a) for a in argv])


def refused(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        parse(*argv)
    return capsys.readouterr().err


def test_the_settings_file_sets_flags_and_the_command_line_wins(tmp_path):
    path = tmp_path / "glide-serve.toml"
    path.write_text('port = 9000\nmax-per-user = 2\nrate-limit = 30\nauth = ["alice:a", "bob:b"]\n'
                    'trusted-proxy = ["127.0.0.1"]\nroot-path = "/glide/"\nbackend = "local"\n'
                    'keep-outputs = 60\ncuda-graphs = false\n')
    args = parse("--config", path)
    assert (args.port, args.max_per_user, args.rate_limit, args.root_path) == (9000, 2, 30, "/glide")
    assert args.auth == ["alice:a", "bob:b"] and args.keep_outputs == 60.0 and not args.cuda_graphs
    assert [str(n) for n in args.trusted_proxy] == ["127.0.0.1/32"]
    args = parse("--config", path, "--port", 9001, "--auth", "carol:c")
    assert args.port == 9001 and args.auth == ["carol:c"] and args.max_per_user == 2


def test_the_shipped_example_settings_file_is_valid():
    args = parse("--config", Path(__file__).parents[1] / "deploy" / "glide-serve.toml")
    assert args.root_path == "/glide" and args.max_per_user >= 1


@pytest.mark.parametrize("text,message", [
    ("max_per_user = 2", "unknown setting 'max_per_user' (did you mean 'max-per-user'?)"),
    ("colour = 'blue'", "unknown setting 'colour'; the keys are: auth, backend,"),
    ("[server]\nport = 1", "unknown setting 'server'"),
    ("port = 'eighty'", "port = 'eighty': expected a whole number"),
    ("port = true", "port = True: expected a whole number"),
    ("backend = 'cloud'", "backend = 'cloud': choose from local, ray"),
    ("cuda-graphs = 'yes'", "cuda-graphs = 'yes': expected true or false"),
    ("port = ", "not a valid TOML file"),
])
def test_a_bad_settings_file_is_refused_naming_the_key(tmp_path, capsys, text, message):
    path = tmp_path / "glide-serve.toml"
    path.write_text(text)
    assert message in refused(capsys, "--config", path)


def test_a_missing_settings_file_is_refused(tmp_path, capsys):
    assert "--config " + str(tmp_path / "nope.toml") + ": No such file" in refused(capsys, "--config",
                                                                                 tmp_path / "nope.toml")


@pytest.mark.parametrize("argv,message", [
    (["--root-path", "glide"], "--root-path must be a path such as /glide, not 'glide'"),
    (["--root-path", "/a b"], "--root-path must be a path such as /glide"),
    (["--rate-limit", "0"], "--rate-limit must be at least 1 image a minute, not 0"),
    (["--rate-limit", "-5"], "--rate-limit must be at least 1 image a minute, not -5"),
    (["--max-per-user", "0"], "--max-per-user must be at least 1"),
    (["--trusted-proxy", "nginx"], "--trusted-proxy 'nginx' is not an IP address"),
])
def test_bad_serving_flags_are_refused_in_words(capsys, argv, message):
    assert message in refused(capsys, *argv)


def test_a_port_in_use_is_a_clear_error():
    import socket

    import fastapi

    from demo.server import WebServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"could not listen on 127.0.0.1:{port}"):
            WebServer(fastapi.FastAPI(), "127.0.0.1", port).start()


# ---------------------------------------------------------------------------------------------- the demo served here
class Gate:
    """A runner that holds the device until `open` is set, then runs each batch on the real pipeline,
    recording whose jobs ran in which order."""

    def __init__(self):
        from glide.pipeline import load_pipeline
        from glide.serving.batches import batch_runner

        self.open = threading.Event()
        self.users = []
        self._run = batch_runner(lambda model: load_pipeline(model, "cpu", "float32"))

    def __call__(self, batch, report, should_stop):
        assert self.open.wait(120), "the test never opened the gate"
        self.users += [job.user for job in batch.jobs]
        return self._run(batch, report, should_stop)


class Hosted:
    """The demo (its command line `argv`) served in this process on a gated local backend."""

    def __init__(self, tmp_path, *argv):
        from demo.app import parse_args, web_app
        from demo.server import WebServer
        from demo.service import DemoService
        from demo.testing import free_port
        from glide.serving.local import LocalBackend

        port = free_port()
        args = parse_args(["--port", str(port), "--device", "cpu", *argv])
        self.gate = Gate()
        # One image per run: the order of runs is the order in which the queue served its users.
        self.backend = LocalBackend(runner=self.gate, workers=1, max_batch=1, max_per_user=args.max_per_user,
                                    images_per_minute=args.rate_limit)
        service = DemoService(device="cpu", backend=self.backend,
                              out_dir=tmp_path / "outputs")
        self.server = WebServer(web_app(args, service, concurrency=1), "127.0.0.1", port)
        self.server.start()
        self.url = f"http://127.0.0.1:{port}/"

    def client(self, **kwargs):
        from gradio_client import Client

        return Client(self.url, verbose=False, **kwargs)

    def wait_for_queue(self, waiting: int, timeout: float = 60.0) -> None:
        """Wait until the backend holds one job at the gate (running) and exactly `waiting` jobs behind it."""
        deadline = time.monotonic() + timeout
        while (stats := self.backend.stats())["running"] != 1 or stats["waiting"] != waiting:
            assert time.monotonic() < deadline, f"{stats} after {timeout:.0f} s, not 1 running and {waiting} waiting"
            time.sleep(0.05)

    def get(self, path: str):
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def close(self):
        self.gate.open.set()
        # The test is over: stop without waiting out the test clients' open heartbeat streams (uvicorn's 5 s grace).
        self.server.server.force_exit = True
        self.server.stop()




@pytest.mark.slow
def test_one_user_with_five_sessions_is_served_as_one(hosted):
    """Five sessions of alice (five API clients) and one of bob queue behind carol's running job: bob is served
    right after alice's first, as if alice had one session, and alice's sixth request meets the per-user cap."""
    from gradio_client.exceptions import AppError

    server = hosted("--auth", "alice:a", "--auth", "bob:b", "--auth", "carol:c", "--max-per-user", "5")

    def as_user(name):
        return server.client(auth=(name, name[0]))

    carol = as_user("carol").submit(PROMPT, seed=0, **QUICK, api_name="/generate")
    server.wait_for_queue(0)                    # carol's job holds the device; the others queue behind it
    alice = [as_user("alice").submit(PROMPT, seed=1 + i, **QUICK, api_name="/generate") for i in range(5)]
    server.wait_for_queue(5)
    with pytest.raises(AppError, match="You already have 5 requests waiting"):
        as_user("alice").predict(PROMPT, seed=9, **QUICK, api_name="/generate")
    bob = as_user("bob").submit(PROMPT, seed=20, **QUICK, api_name="/generate")
    server.wait_for_queue(6)
    server.gate.open.set()
    for job in [carol, bob, *alice]:
        assert len(job.result(timeout=120)) == 1
    # Were each session its own user, bob (never served) would come last, after all five of alice's.
    assert server.gate.users == ["user:" + name for name in ("carol", "alice", "bob", "alice", "alice", "alice", "alice")]


def samples(text: str) -> dict:
    """{(name, labels...): value} of a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, *sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


@pytest.mark.slow
def test_healthz_and_metrics_beside_the_ui_and_the_counters_move(hosted):
    server = hosted("--rate-limit", "3")
    server.gate.open.set()
    status, page = server.get("")
    assert status == 200 and "GLIDE demo" in page            # the UI, mounted at /
    status, body = server.get("healthz")
    health = json.loads(body)
    assert status == 200 and health["healthy"] and health["backend"] == "local" and health["problems"] == []

    def value(scrape, name, **labels):
        return scrape.get((name, *sorted(labels.items())), 0.0)

    before = samples(server.get("metrics")[1])
    images = server.client().predict(PROMPT, batch_size=2, **QUICK, api_name="/generate")
    assert len(images) == 2
    after = samples(server.get("metrics")[1])
    assert value(after, "glide_requests_total", kind="generate", outcome="ok") == \
        value(before, "glide_requests_total", kind="generate", outcome="ok") + 1
    assert value(after, "glide_images_total", kind="generate") == value(before, "glide_images_total", kind="generate") + 2
    for histogram in ("glide_queue_wait_seconds_count", "glide_run_seconds_count"):
        assert value(after, histogram, kind="generate") == value(before, histogram, kind="generate") + 1
    assert value(after, "glide_queue_depth") == 0 and value(after, "glide_running_jobs") == 0
    assert value(after, "glide_device_memory_bytes", device="cpu", where="local") > 0
    assert "shapes" in {m["model"] for m in json.loads(server.get("healthz")[1])["models"]}
    # Three images a minute: two more are refused in words, and counted as refused.
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="at most 3 images a minute per user and you asked for 2 in the last minute"):
        server.client().predict(PROMPT, batch_size=2, **QUICK, api_name="/generate")
    assert value(samples(server.get("metrics")[1]), "glide_requests_total", kind="generate", outcome="refused") == \
        value(after, "glide_requests_total", kind="generate", outcome="refused") + 1


# ---------------------------------------------------------------------------------------------- behind nginx
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 25m;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
{location}
    }}
}}
"""


def nginx_location(demo_port: int) -> str:
    """The documented nginx snippet (docs/serving.md, "Behind a reverse proxy"), pointed at `demo_port`."""
    page = (Path(__file__).parents[1] / "docs" / "serving.md").read_text()
    snippet = re.search(r"```nginx\n(.*?)```", page, re.S)
    assert snippet, "docs/serving.md has no ```nginx snippet"
    location = re.search(r"    location /glide/ \{.*?\n    \}\n", snippet.group(1), re.S)
    assert location, "the nginx snippet of docs/serving.md has no `location /glide/` block"
    return location.group(0).replace("127.0.0.1:7860", f"127.0.0.1:{demo_port}")


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory):
    """The demo with --root-path /glide behind nginx at http://127.0.0.1:PORT/glide/."""
    from demo.testing import free_port, missing_weights, start_server

    if not Path(NGINX).exists():
        pytest.skip(f"{NGINX} not found: apt-get install nginx (the Makefile's SYSTEM_PACKAGES)")
    if missing_weights():
        pytest.skip(missing_weights())
    demo = start_server("--root-path", "/glide")
    tmp, port = tmp_path_factory.mktemp("nginx"), free_port()
    demo_port = int(demo.url.rstrip("/").rsplit(":", 1)[1])
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port, location=nginx_location(demo_port)))
    nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/glide/"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "healthz", timeout=5).close()
            break
        except OSError:
            assert nginx.poll() is None, f"nginx exited: {nginx.stdout.read().decode()}"
            assert time.monotonic() < deadline, (tmp / "error.log").read_text()
            time.sleep(0.2)
    yield SimpleNamespace(url=url, demo=demo, access_log=tmp / "access.log")
    nginx.terminate()
    nginx.wait(10)
    demo.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_the_page_and_its_config_through_the_proxy(behind_nginx):
    with urllib.request.urlopen(behind_nginx.url, timeout=30) as response:
        assert response.status == 200 and "GLIDE demo" in response.read().decode()
    with urllib.request.urlopen(behind_nginx.url + "config", timeout=30) as response:
        # The page's own links (assets, the API, files) are under the proxy's path.
        assert json.loads(response.read())["root"] == behind_nginx.url.rstrip("/")
    with urllib.request.urlopen(behind_nginx.url + "healthz", timeout=30) as response:
        assert json.loads(response.read())["healthy"]


@pytest.mark.slow
def test_an_api_generate_and_its_image_download_through_the_proxy(behind_nginx):
    from gradio_client import Client
    from PIL import Image

    from glide.pngmeta import read_settings

    client = Client(behind_nginx.url, verbose=False, download_files=False)
    (item,) = client.predict(PROMPT, seed=5, steps=2, upsample_steps="2", api_name="/generate")
    url = item["image"]["url"]
    assert url.startswith(behind_nginx.url + "gradio_api/file="), url
    with urllib.request.urlopen(url, timeout=30) as response:
        image = Image.open(response)
        image.load()
    assert image.size == (128, 128) and read_settings(image)["seed"] == 5
    # nginx logs a request once its response is sent, so the line may land just after the client has the image.
    deadline = time.monotonic() + 10
    while not re.search(r'"GET /glide/gradio_api/file=\S+ HTTP/1.1" 200', behind_nginx.access_log.read_text()):
        assert time.monotonic() < deadline, behind_nginx.access_log.read_text()
        time.sleep(0.05)


@pytest.mark.slow
def test_progress_streams_through_the_proxy(behind_nginx):
    """The page's own Generate (the private event a browser sends, over the queue's server-sent events): its
    progress arrives step by step, not held by the proxy until the end."""
    import httpx

    with urllib.request.urlopen(behind_nginx.url + "config", timeout=30) as response:
        config = json.loads(response.read())
    components = {c["id"]: c for c in config["components"]}
    gallery = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "gallery")
    fn_index, generate = next((i, d) for i, d in enumerate(config["dependencies"])
                              if gallery in d["outputs"] and any(t[1] == "click" for t in d["targets"]))
    # The form as the page sends it: every input's initial value, but for the prompt and a run of 40 steps.
    chosen = {"prompt": PROMPT, "steps": 40, "upsample": False}
    data = [chosen.get(components[i]["props"].get("elem_id"), components[i]["props"].get("value"))
            for i in generate["inputs"]]
    session = "nginx-progress-test"
    with httpx.Client(base_url=behind_nginx.url, timeout=120) as http:
        joined = http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                          "trigger_id": generate["targets"][0][0], "event_data": None})
        assert joined.status_code == 200, joined.text
        arrivals = []
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                arrivals.append((message["msg"], time.monotonic()))
                if message["msg"] == "process_completed":
                    assert message["success"], message
                    break
    steps = [when for msg, when in arrivals if msg == "progress"]
    assert len(steps) > 1, arrivals
    # Streamed: the first step arrived well before the end (all at once, they would arrive together).
    assert arrivals[-1][1] - steps[0] > 0.2, arrivals


def test_glide_serve_reads_the_settings_file_too(tmp_path, capsys):
    from glide.cli import parse_args

    path = tmp_path / "glide-serve.toml"
    path.write_text("max-batch = 4\nreplicas = 3\n")
    args = parse_args(["serve", "--config", str(path)])
    assert (args.max_batch, args.replicas) == (4, 3)
    assert parse_args(["serve", "--config", str(path), "--max-batch", "2"]).max_batch == 2
    path.write_text("colour = 'blue'\n")
    with pytest.raises(SystemExit):
        parse_args(["serve", "--config", str(path)])
    assert "unknown setting 'colour'" in capsys.readouterr().err
