"""Shared fixtures: where the reference goldens live, and skipping cleanly when they do not."""
import collections
import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each pytest-xdist worker is one of the tests running at once: one torch thread each, so that their OpenMP threads
# do not fight over the cores (set before any test module imports torch).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"


def _reference_dir() -> Path:
    explicit = os.environ.get("GLIDE_REFERENCE_DIR")
    return Path(explicit) if explicit else REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference implementation's golden data (../shared/reference or $GLIDE_REFERENCE_DIR)."""
    path = _reference_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"reference data not found at {path}; set GLIDE_REFERENCE_DIR to run golden tests")
    return path


@pytest.fixture(scope="session")
def vocab_dir(reference_dir) -> Path:
    """The official tokenizer files, used as a ready-filled cache so no test downloads them."""
    return reference_dir / "vocab"


@pytest.fixture(scope="session")
def ray_serve_config():
    """How the tests' Serve application is deployed: 2 CPU replicas, one thread each, in float32 (the serving
    tests compare images across batch sizes to one 8-bit level, which is float32's promise)."""
    from glide.serving.options import ServeConfig

    return ServeConfig(replicas=2, threads=1, dtype="float32")


@pytest.fixture(scope="session")
def ray_cluster(ray_serve_config):
    """A local Ray (2 CPUs, no dashboard) with the Serve application deployed (ray_serve_config). Yields the
    cluster's address, for demo servers that attach to it; shut down at the end."""
    ray_serve = pytest.importorskip("glide.serving.ray_serve", reason="pip install 'ray[serve]' (the ray extra)")
    from demo.testing import missing_weights

    if missing_weights():
        pytest.skip(missing_weights())
    ray_serve.connect(num_cpus=2)
    try:
        ray_serve.deploy(ray_serve_config)
        import ray

        yield ray.get_runtime_context().gcs_address
    finally:
        ray_serve.shutdown()


@pytest.fixture
def hosted(tmp_path):
    """start(*argv) -> the demo served in this process with those command-line arguments, its backend behind a
    gate (test_hosting.Hosted); every server started is closed at the end."""
    from test_hosting import Hosted

    from demo.testing import missing_weights

    if missing_weights():
        pytest.skip(missing_weights())
    servers = []

    def start(*argv):
        servers.append(Hosted(tmp_path, *argv))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# What `make test-fast` leaves out (`-m "not slow"`): tests that drive a browser, start a Ray cluster (or a demo
# on one), run the reference notebooks or the whole benchmark; single slow tests carry @pytest.mark.slow.
SLOW_MODULES = {"test_ray_serve", "test_notebooks", "test_published_notebooks"}   # and every test_browser*
SLOW_FIXTURES = {"ray_cluster", "quick_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        params = item.callspec.params.values() if hasattr(item, "callspec") else ()
        on_ray = "ray_cluster" in item.fixturenames or "ray" in list(params)
        module = item.module.__name__.rpartition(".")[2]
        if module in SLOW_MODULES or module.startswith("test_browser") or SLOW_FIXTURES & set(item.fixturenames) or on_ray:
            item.add_marker(pytest.mark.slow)
        if on_ray and worker_group(item.nodeid) != "ray":
            raise pytest.UsageError(f"{item.nodeid} runs on the Ray cluster: put it in test_ray_serve.py or give it a "
                                    "parameter named 'ray', so that it runs in the one worker that starts the cluster")


def worker_group(nodeid: str) -> str:
    """Which tests run in one pytest-xdist worker (`make test` runs two): those on the Ray cluster (test_ray_serve and
    the tests parametrized "ray") in the worker that started it, those on the shared local demo server (test_demo,
    test_strength) in the one that started that, the browser tests (test_browser*) in one worker with a server of
    their own, and each other module's tests together, with their module's fixtures."""
    module = nodeid.split("::")[0]
    if module.endswith("test_ray_serve.py") or re.search(r"\[(.+-)?ray(-.+)?\]$", nodeid):
        return "ray"
    name = module.rpartition("/")[2]
    if name in ("test_demo.py", "test_strength.py"):
        return "demo-server"
    if name.startswith("test_browser"):   # a server of their own: two minutes of browser tests beside test_demo
        return "browser"
    return module


# The groups that take longest (a minute or more of `make test` each), longest first. They are handed out before
# the others, so that two workers end together instead of one starting a long group when the other is nearly done.
LONGEST_GROUPS = ("browser", "tests/test_int8.py", "ray", "demo-server")


class LongestFirst(collections.OrderedDict):
    """pytest-xdist's queue of groups, handing out LONGEST_GROUPS first, then the rest in xdist's order (the groups
    of most tests first)."""

    def popitem(self, last=True):
        if last:
            return super().popitem(last=True)
        group = min(self, key=lambda g: LONGEST_GROUPS.index(g) if g in LONGEST_GROUPS else len(LONGEST_GROUPS))
        return group, self.pop(group)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # Groups by worker_group. (xdist's own `--dist loadgroup` marks do not reach its scheduler under pytest 9.2:
    # it renames the tests through an attribute pytest no longer reads.)
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkerGroup(LoadScopeScheduling):
        def __init__(self, config, log):
            super().__init__(config, log)
            self.workqueue = LongestFirst()

        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByWorkerGroup(config, log)


# The browser tests' fixtures (tests/test_browser*.py; their helpers are in browser_support.py).
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, which `make` installs (SYSTEM_PACKAGES in the Makefile); without it the tests skip."""
    from demo.testing import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium) or apt-get install chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser_page(chromium):
    """One browser and page for the module; the `page` fixture reloads the app for every test."""
    from browser_support import SHOTS, TIMEOUT_MS, sync_api

    from demo.testing import CHROMIUM_ARGS, missing_weights, shared_server

    if missing_weights():
        pytest.skip(missing_weights())

    server = shared_server()
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page, server.url
        browser.close()


@pytest.fixture
def page(browser_page):
    """The app freshly loaded (a new gradio session), at desktop width: no test relies on another's state.
    No handler may fail while a test runs (the server's count of failures on /metrics stays where it was)."""
    from demo.testing import internal_errors, shared_server

    page, url = browser_page
    before = internal_errors(shared_server())
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    yield page
    assert internal_errors(shared_server()) == before, f"a handler failed: see {shared_server().log_path}"
