"""The Ray Serve application: the demo's jobs run by replicas on several GPUs or machines, behind the same UI.

    python app.py --backend ray --replicas 2                      # a local Ray, two replicas, the UI in front
    ray start --head                                               # or a cluster: head, then workers with
    ray start --address=HEAD:6379                                  #   `ray start --address` on each machine
    python -m glide serve --ray-address auto --replicas 4 --gpus-per-replica 1    # deploy (or update)
    python app.py --backend ray --ray-address auto                 # the UI attaches to what runs
    python -m glide serve --ray-address auto --status              # replicas, devices, queues

One deployment, `GlideReplica`, serves every model family: each replica loads a family's models
once, on its own device (Ray hands each replica its GPUs), the first time a request needs them.
A request's stages (base, upsampler) and a comparison's CLIP run back to back on one image batch,
so they stay in one replica: a hop through Serve costs ~0.1 s a request (bench.serving, docs/serving.md), and
a deployment per stage would add one more hop and queue to every request and keep a second device
busy for a fraction of it, for no throughput gain while each stage fits one device.

Batching: `@serve.batch` collects the generate requests that reach a replica together (up to
`max_batch` images); those with equal settings (GenerationSettings.batch_key: all but prompts and seeds)
share one sampling run, others run one after the other. Inpainting and comparisons run alone.
Each request streams ("progress", Progress), then ("result", value, run id) or ("error", exc).
Cancelling a request (the user's Stop, a client gone) cancels its stream; the replica marks it and
stops a run only when every request in it is cancelled, between steps. `RayBackend` is the front
end's side: it takes `glide.serving.jobs.Job`s like the local backend, in the same fair queue with the same
caps, sends Serve only as many images as the replicas can run at once (so the order in which users are
served is the fair queue's, not Serve's first come first served), and retries a request once when the
replica serving it dies.

Security: Ray has no authentication. Keep its ports (6379, 8265, 10001) on a private network and
its dashboard off or on 127.0.0.1; put only the Gradio UI (with --auth) in front of users.
"""
import asyncio
import itertools
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Dict, List, Optional

import ray
import torch
from ray import serve
from ray.exceptions import RayActorError, RayError
from ray.serve.exceptions import RequestCancelledError

from ..errors import Cancelled, ClusterUnavailable, ServerRestarting
from ..pipeline import load_pipeline, loaded_pipelines
from ..precision import choose_precision
from .base import RESTARTING, STOP_S, QueuedBackend
from .batches import run_batch
from .jobs import Job, progress_of
from .metrics import memory_here
from .options import APP_NAME, DEPLOYMENT, ServeConfig

log = logging.getLogger("glide.serving.ray")

HEALTH_PROBE_S = 5.0   # how long /healthz and /metrics wait for the replicas to describe themselves, in all
RETRIES = 1   # a request whose replica died is sent once more, to whichever replica Serve picks


# ---------------------------------------------------------------------------------------------- the replica
def _images_in(requests: List[Dict]) -> int:
    return sum(len(r["payload"].prompts) for r in requests)


class GlideReplica:
    """One replica: the families' pipelines on this replica's device, and the requests it is serving."""

    def __init__(self, config: Dict):
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
        self.config = ServeConfig(**config)
        threads = self.config.threads or max(1, int(self.config.cpus_per_replica))
        torch.set_num_threads(threads)
        # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it reserved for this replica (none: the CPU).
        self.device = "cuda" if self.config.gpus_per_replica > 0 and torch.cuda.is_available() else "cpu"
        # "auto" resolved here, on the replica's own machine: replicas on different hosts may differ.
        self.precision = choose_precision(self.config.dtype, torch.device(self.device))
        self.name = ray.get_runtime_context().get_actor_name() or f"replica-{os.getpid()}"
        self.cancelled: set = set()          # ids of requests whose callers went away
        self.active = 0                      # requests this replica holds (waiting or running)
        self.running = 0                     # sampling runs in progress (0 or 1: one executor thread)
        self.runs = itertools.count(1)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="glide-run")   # one run at a time on the device
        self._batched.set_max_batch_size(self.config.max_batch)

    def pipeline_of(self, model: str):
        return load_pipeline(model, self.device, self.precision, self.config.checkpoint_dir)

    def describe(self) -> Dict:
        return {"replica": self.name, "device": self.device, "dtype": self.precision.describe(),
                "threads": torch.get_num_threads(),
                "cuda_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "requests": self.active,
                "running": self.running, "models": loaded_pipelines(), "memory": memory_here()}

    async def run(self, request: Dict):
        """Stream one request's events (see the module docstring)."""
        self.active += 1
        try:
            if request["batch_key"] is not None:
                async for item in self._batched(request):
                    yield item
            else:
                async for items in self._execute([request]):
                    yield items[0]
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.add(request["id"])   # read by the run's should_stop, between steps
            raise
        finally:
            self.active -= 1

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05, batch_size_fn=_images_in)
    async def _batched(self, requests: List[Dict]):
        """Requests that arrived together: those with equal settings share a run, groups run in turn."""
        groups: Dict[str, List[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request["batch_key"], []).append(i)
        waiting = [("wait", None)] * len(requests)
        for rows in groups.values():
            async for items in self._execute([requests[i] for i in rows]):
                out = list(waiting)
                for i, item in zip(rows, items):
                    out[i] = item
                yield out
            for i in rows:             # their streams end now, while later groups run
                waiting[i] = StopIteration
            yield list(waiting)

    async def _execute(self, requests: List[Dict]):
        """One run of `requests` in the executor thread; yields a list of items (one per request) per event."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        ids, counts = [r["id"] for r in requests], [len(r["payload"].prompts) for r in requests]
        offsets = list(itertools.accumulate([0] + counts[:-1]))

        def report(stage, step, total, x0):
            items = [("progress", progress_of(off, n, r["previews"], stage, step, total, x0,
                                              self.config.preview_every))
                     for off, n, r in zip(offsets, counts, requests)]
            loop.call_soon_threadsafe(events.put_nowait, items)

        def work():
            self.running += 1
            try:
                return run_batch(self.pipeline_of, [r["payload"] for r in requests], report,
                                 lambda: all(i in self.cancelled for i in ids))
            finally:
                self.running -= 1

        run = f"{self.name}:{next(self.runs)}"
        future = loop.run_in_executor(self.executor, work)
        try:
            while not (future.done() and events.empty()):
                get = asyncio.ensure_future(events.get())
                await asyncio.wait({get, future}, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    yield get.result()
                else:
                    get.cancel()
            try:
                yield [("error", result) if isinstance(result, BaseException) else ("result", result, run)
                       for result in future.result()]
            except Exception as exc:  # noqa: BLE001 - each request's caller gets it, with its type
                yield [("error", exc)] * len(requests)
        finally:
            self.cancelled.difference_update(ids)


# ---------------------------------------------------------------------------------------------- cluster
def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Attach to the Ray cluster at `address` ("auto", "ray://host:10001"), or start a local one (no
    dashboard, `num_cpus` CPUs). Returns True when this process started Ray (and so owns it)."""
    if ray.is_initialized():
        return False
    # Replicas' log lines reach this process's output; Ray's de-duplication would fold equal ones
    # ("generate run: 1 request(s)" from two replicas) into one, hiding what happened.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        if address:
            ray.init(address=address, namespace="glide", logging_level=logging.WARNING)
            return False
        ray.init(num_cpus=num_cpus, include_dashboard=False, namespace="glide", logging_level=logging.WARNING)
        return True
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {exc}. "
                                 "Start one with `ray start --head`, or leave out --ray-address") from None


def shutdown() -> None:
    """Stop the Serve application and the Ray this process started."""
    serve.shutdown()
    ray.shutdown()


def deploy(config: ServeConfig):
    """Deploy (or update in place) the application; returns its handle. Needs `connect()` first."""
    config.check()
    options = dict(name=DEPLOYMENT, max_ongoing_requests=max(2 * config.max_batch, 16),
                   ray_actor_options={"num_cpus": config.cpus_per_replica, "num_gpus": config.gpus_per_replica})
    if config.max_replicas is not None:
        options["autoscaling_config"] = {"min_replicas": config.min_replicas, "max_replicas": config.max_replicas,
                                         "target_ongoing_requests": config.max_batch}
    else:
        options["num_replicas"] = config.replicas
    serve.start(proxy_location="Disabled")   # handles only: no HTTP port to guard
    app = serve.deployment(GlideReplica).options(**options).bind(asdict(config))
    return serve.run(app, name=APP_NAME, route_prefix=None)


def handle():
    """The running application's handle; ClusterUnavailable when it is not deployed."""
    try:
        return serve.get_deployment_handle(DEPLOYMENT, app_name=APP_NAME)
    except Exception as exc:  # noqa: BLE001 - Serve raises several kinds for "not there"
        raise ClusterUnavailable(f"no glide application on this Ray cluster ({exc}); deploy it with "
                                 "`python -m glide serve --ray-address auto --replicas N`") from None


def _state(value) -> str:
    return str(value.value if hasattr(value, "value") else value)


def _application():
    """Serve's status of the glide application; ClusterUnavailable when it is not deployed."""
    app = serve.status().applications.get(APP_NAME)
    if app is None:
        raise ClusterUnavailable("no glide application on this Ray cluster; deploy it with `glide serve`")
    return app


def replicas(samples: int = 16, timeout_s: float = 30.0) -> List[Dict]:
    """What the replicas say of themselves (GlideReplica.describe), by name: those that answer `samples`
    probes, sent at once, within `timeout_s` seconds in all; TimeoutError when none answers by then."""
    deadline = time.monotonic() + timeout_s
    probes = [handle().describe.remote() for _ in range(samples)]
    answers = {}
    for probe in probes:
        try:
            answer = probe.result(timeout_s=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            probe.cancel()
            continue
        answers[answer["replica"]] = answer
    if not answers:
        raise TimeoutError(f"no replica answered within {timeout_s:g} s")
    return sorted(answers.values(), key=lambda r: r["replica"])


def status(samples: int = 16) -> Dict:
    """The application's state, its replicas by state (Serve's), the cluster's resources, and what the
    replicas that answer `samples` probes say of themselves: device, threads, requests held."""
    app = _application()
    deployments = {name: {"status": _state(d.status), "replicas": {_state(k): v for k, v in d.replica_states.items()},
                          "message": d.message}
                   for name, d in app.deployments.items()}
    return {"application": _state(app.status), "deployments": deployments, "replicas": replicas(samples),
            "cluster": {"resources": ray.cluster_resources(), "available": ray.available_resources()}}


# ---------------------------------------------------------------------------------------------- front end
class RayBackend(QueuedBackend):
    """The front end's side of the Serve application: `submit(job)` streams the job from a replica.

    Jobs wait here in a FairQueue (round-robin across users, a cap per user) and are sent to Serve in
    its order while fewer than `in_flight` images are there (the replicas' batch size times their
    number: what they can run at once), so the fairness rules of the local backend hold in front of the
    replicas too; Serve then batches what reaches each replica. A job sent counts as waiting, against
    its user's cap, until its first step runs on a replica.
    """

    def __init__(self, deployment_handle, max_pending: int = 64, max_per_user: int = 4,
                 images_per_minute: Optional[int] = None, in_flight: int = 16, owns_cluster: bool = False):
        """`owns_cluster`: this process started the Ray it talks to, so `close()` shuts it down."""
        super().__init__(max_pending, max_per_user, images_per_minute)
        self.owns_cluster = owns_cluster
        self.handle = deployment_handle.options(stream=True)
        self.in_flight = in_flight
        self._streams: Dict[Job, object] = {}     # jobs sent -> their response stream (None until it exists)
        self.run_ids: set = set()                 # distinct sampling runs seen (batching shows as fewer runs)
        self._closed = False                      # close(): the dispatcher ends
        self._dispatcher = threading.Thread(target=self._dispatch, name="ray-dispatch", daemon=True)
        self._dispatcher.start()

    def _running(self) -> List[Job]:
        return list(self._streams)

    def _next_job(self) -> Optional[Job]:
        """The next job in the fair order when the replicas have room for its images (under the lock)."""
        self._drop_cancelled()
        order = self._pending.order()
        if not order:
            return None
        sent = sum(len(job.prompts) for job in self._streams)
        return order[0] if not sent or sent + len(order[0].prompts) <= self.in_flight else None

    def _dispatch(self) -> None:
        """Send waiting jobs to Serve in the fair order, keeping at most `in_flight` images there."""
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    job = self._next_job()
                    if job is not None:
                        break
                    self._cond.wait()
                self._pending.take([job], started=False)    # it starts with its first step on a replica
                self._streams[job] = None
            threading.Thread(target=self._follow, args=(job,), name=f"ray-job-{job.id}", daemon=True).start()

    def _follow(self, job: Job) -> None:
        request = {"payload": job.payload, "batch_key": job.batch_key, "previews": job.previews}
        result, error = None, None
        try:
            for attempt in range(RETRIES + 1):
                try:
                    result, error = self._stream(job, {**request, "id": uuid.uuid4().hex})
                    break
                except RayActorError as exc:
                    if job.cancelled.is_set():
                        raise Cancelled("stopped") from None
                    if attempt == RETRIES:
                        raise ClusterUnavailable("the server lost the worker running your request twice; please "
                                                 "try again in a minute") from exc
                    log.warning("replica died serving job %s (%s); retrying it once", job.id, exc)
        except RequestCancelledError:
            error = ServerRestarting(RESTARTING) if self._closing else Cancelled("stopped")
        except (RayError, ConnectionError) as exc:   # the cluster, not the request: say so in words
            log.error("job %s: the Ray cluster failed: %r", job.id, exc)
            error = ClusterUnavailable("The cluster that makes the images cannot be reached right now; the "
                                       "server's operator has been told (see its log). Try again later.")
        except Exception as exc:  # noqa: BLE001 - handed to the job's waiter, raised in its thread
            error = exc
        finally:
            self._finish(job, result, error)
            with self._cond:
                self._streams.pop(job, None)
                self._cond.notify_all()

    def _stream(self, job: Job, request: Dict):
        """One request's stream from a replica: its progress reported to the job; (result, error) at its end."""
        stream = self.handle.run.remote(request)
        with self._cond:
            self._streams[job] = stream
        if job.cancelled.is_set():
            stream.cancel()
        result, error = None, None
        for item in stream:
            if item[0] in ("progress", "result") and not job.started.is_set():
                job.start()         # its run began on a replica: no longer waiting (fair queue, metrics)
            if item[0] == "progress":
                job.report(item[1])
            elif item[0] == "result":
                result = item[1]
                log.info("job %s: result from run %s", job.id, item[2])
                with self._cond:
                    self.run_ids.add(item[2])
            elif item[0] == "error":
                error = item[1]
        return result, error

    def cancelled(self, job: Job) -> None:
        with self._cond:
            stream = self._streams.get(job)
            self._cond.notify_all()   # a waiting job leaves the queue
        if stream is not None:
            stream.cancel()

    def stats(self) -> Dict[str, int]:
        """Waiting: here or sent to Serve but not started; running: started on a replica."""
        with self._cond:
            return {"waiting": self._pending.waiting(), "running": sum(j.started.is_set() for j in self._streams),
                    "runs": len(self.run_ids)}

    def health(self, probe_timeout_s: float = HEALTH_PROBE_S) -> Dict:
        """Healthy while the application runs with at least one replica running and the replicas answer
        probes within `probe_timeout_s` seconds (in all); the models: those the answering replicas have loaded."""
        problems, application, running, answering = [], None, 0, []
        if self._closing:
            problems.append("shutting down")
        try:
            app = _application()
            application = _state(app.status)
            deployment = app.deployments.get(DEPLOYMENT)
            states = deployment.replica_states.items() if deployment is not None else ()
            running = sum(n for state, n in states if _state(state) == "RUNNING")
            if application != "RUNNING":
                problems.append(f"the glide application is {application}")
            if not running:
                problems.append("no replica is running")
            else:
                answering = replicas(2 * running, timeout_s=probe_timeout_s)
        except ClusterUnavailable as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure to ask is an unhealthy cluster, said in words
            problems.append(f"the Ray cluster does not answer: {type(exc).__name__}: {exc}")
        models = [m for r in answering for m in r["models"]]
        return {"healthy": not problems, "backend": "ray", "problems": problems, "models": models,
                "application": application, "replicas_running": running,
                "replicas": [{k: r[k] for k in ("replica", "device", "dtype", "requests")} for r in answering],
                **self.stats()}

    def device_memory(self) -> Dict[str, Dict[str, int]]:
        """Each answering replica's memory (none while the application is down: /metrics still answers)."""
        try:
            return {r["replica"]: r["memory"] for r in replicas(8, timeout_s=HEALTH_PROBE_S)}
        except Exception as exc:  # noqa: BLE001 - the scrape goes on without them; /healthz says why
            log.warning("no replica memory for /metrics: %s: %s", type(exc).__name__, exc)
            return {}

    def drain(self, grace_s: float, stop_s: float = STOP_S) -> None:
        """Refuse new jobs and tell the waiting ones the server is restarting; give the ones sent `grace_s`
        seconds, then cancel them (their users are told the same) and wait up to `stop_s` seconds for their
        streams to end. The Serve application keeps running for other front ends."""
        self._refuse_and_release_waiting()
        with self._cond:
            finished = self._wait_for_running(grace_s)
            streams = [stream for stream in self._streams.values() if stream is not None]
        if not finished:
            for stream in streams:
                stream.cancel()
            with self._cond:
                self._wait_for_running(stop_s)
        self._answer_the_rest()

    def close(self) -> None:
        """End the dispatcher; shut down the Ray this process started (an attached cluster keeps serving other
        front ends)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join()
        if self.owns_cluster:
            shutdown()
