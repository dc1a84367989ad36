"""Serving throughput and latency against concurrent clients: the local backend and Ray Serve.

    python -m bench.serving                        # local, ray with 1 and 2 replicas; clients 1, 2, 4, 8
    python -m bench.serving --backends local --clients 1,4 --requests 2 --gpus-per-replica 1

Each client sends `--requests` text-to-image requests one after another (one image each, the
shapes family's default settings with the upsampler, its own seeds), all clients at once. The
backends are built by glide.serving.backend.create_backend and driven directly, as the demo's UI drives
them, so the figures are the serving layer's and the model's, without the browser. Every worker
(the local one, each replica) runs torch on one thread on the CPU, or on its GPU. Prints a table,
writes JSON and markdown under bench/results/.
"""
import argparse
import datetime
import json
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from glide.fileio import write_text_atomic
from glide.serving.backend import BackendOptions, create_backend
from glide.serving.jobs import Generate, Job
from glide.serving.options import ServeConfig
from glide.settings import GenerationSettings

from . import env
from .report import Table, fmt

PROMPT = "a small red circle on the left on a blue background"
RESULTS = Path(__file__).resolve().parent / "results"


def load(backend, clients: int, requests: int, seed0: int) -> Dict:
    """`clients` threads, each sending `requests` requests in turn; latencies and throughput."""
    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(c: int):
        barrier.wait()
        for r in range(requests):
            settings = GenerationSettings.create(PROMPT, seed=seed0 + c * requests + r)
            job = Job(Generate(settings))
            started = time.perf_counter()
            try:
                backend.submit(job).outcome(timeout=900)
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {"clients": clients, "requests": clients * requests, "images": len(latencies), "errors": errors,
            "seconds": wall, "images_per_s": len(latencies) / wall,
            "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,ray-1,ray-2",
                        help="comma-separated: local, ray-N (N replicas); default local,ray-1,ray-2")
    parser.add_argument("--clients", default="1,2,4,8", help="concurrent clients to try (default 1,2,4,8)")
    parser.add_argument("--requests", type=int, default=3, help="requests per client (default 3)")
    parser.add_argument("--max-batch", type=int, default=8, help="images per batched run (default 8)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0, help="0: replicas on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    device = "cuda" if args.gpus_per_replica > 0 else "cpu"
    torch.set_num_threads(1)
    info = env.device_info(torch.device(device))
    table = Table("serving: text to image, one image per request (shapes family defaults, with the upsampler)",
                  ["backend", "clients", "requests", "images/s", "p50 s", "p95 s", "errors"])
    results = []
    for name in args.backends.split(","):
        if name == "local":
            options = BackendOptions(device=device, max_batch=args.max_batch, max_pending=1024)
        else:
            replicas = int(name.split("-")[1])
            options = BackendOptions(kind="ray", ray_cpus=max(replicas, 1), max_batch=args.max_batch, max_pending=1024,
                                     deploy=ServeConfig(replicas=replicas, threads=1, max_batch=args.max_batch,
                                                        gpus_per_replica=args.gpus_per_replica))
        backend = create_backend(options)
        try:
            load(backend, 1, 1, seed0=10_000)   # warm-up: models loaded, first-call costs paid
            for level in levels:
                row = {"backend": name, **load(backend, level, args.requests, seed0=level * 1000)}
                results.append(row)
                table.add(name, level, row["requests"], row["images_per_s"], row["p50_s"], row["p95_s"],
                          len(row["errors"]))
                print(table.text().splitlines()[-1], flush=True)
        finally:
            backend.close()
    table.notes.append(f"{info['name']}; flags {', '.join(info.get('cpu_flags', [])) or '-'}; every worker "
                       "(the local one, each replica) on one torch thread; Ray started with as many CPUs as replicas")
    print(table.text())
    stamp = datetime.date.today().isoformat()
    stem = f"{env.device_slug(info)}-{stamp}-serving"
    write_text_atomic(args.out / f"{stem}.json", json.dumps(
        {"meta": {"device": info, "date": stamp, "commit": env.git_commit(), "args": vars(args) | {"out": None}},
         "results": results}, indent=2, default=str) + "\n")
    write_text_atomic(args.out / f"{stem}.md", f"# Serving benchmark, {stamp}\n\n{table.markdown()}")
    print(f"wrote {args.out / stem}.json and .md ({fmt(sum(r['seconds'] for r in results))} s of load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
