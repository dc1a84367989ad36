"""Soak: many clients on a real demo server for minutes; does anything grow without bound?

    python -m bench.soak                         # 32 clients, 5 minutes, the local backend
    python -m bench.soak --clients 8 --minutes 1 --server-args "--backend ray --replicas 2"

Starts `python app.py` (the embedded family, outputs pruned after --keep-outputs seconds), and has
every client send text-to-image requests through gradio_client, one after another: first for
--warm-up seconds (full batches, every pool and cache at its working size), then for --minutes.
Reports every request's fate, p50/p95 latency of the measured part, and the server's resident
memory, open files, threads and outputs folder after the warm-up and at the end (from /proc): a
leak shows as growth between the two. Prints a table, writes JSON and markdown under bench/results/.
"""
import argparse
import datetime
import json
import os
import shlex
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from demo.testing import as_user, start_server
from glide.fileio import write_text_atomic

from . import env
from .report import Table

PROMPTS = ["a small red circle on the left on a blue background", "a big green square at the top on a black "
           "background", "a small yellow triangle on the right and a large purple circle on the left on a white "
           "background"]
RESULTS = Path(__file__).resolve().parent / "results"


def process_state(pid: int, outputs: Path) -> Dict:
    """Resident memory, open files and threads of `pid` (and its children: a local Ray's), the outputs folder."""
    def rss_kb(p: int) -> int:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def children(p: int) -> List[int]:
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{p}/task")
                    for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            return []
        return kids + [g for k in kids for g in children(k)]

    pids = [pid] + children(pid)
    live = [p for p in pids if Path(f"/proc/{p}").exists()]
    files = list(outputs.glob("*")) if outputs.exists() else []
    return {"rss_mb": sum(rss_kb(p) for p in live) / 1024, "processes": len(live),
            "open_files": sum(len(os.listdir(f"/proc/{p}/fd")) for p in live),
            "threads": sum(len(os.listdir(f"/proc/{p}/task")) for p in live),
            "outputs": len(files), "outputs_mb": sum(f.stat().st_size for f in files) / 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds of the same load before measuring")
    parser.add_argument("--keep-outputs", type=float, default=60.0, help="the server's --keep-outputs (seconds)")
    parser.add_argument("--server-args", default="", help="more `app.py` arguments, e.g. '--backend ray'")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from gradio_client import Client

    outputs = Path(tempfile.mkdtemp(prefix="glide-soak-"))
    server = start_server("--outputs", str(outputs), "--keep-outputs", str(args.keep_outputs),
                          "--queue-size", str(4 * args.clients), *shlex.split(args.server_args))
    latencies: List[float] = []
    failures: List[str] = []
    lock = threading.Lock()
    phase = {"measuring": False, "warm_until": time.time() + args.warm_up,
             "stop_at": time.time() + args.warm_up + 60 * args.minutes}
    try:
        def client(c: int):
            connection = Client(server.url, verbose=False, **as_user(c))   # 32 users, not one user's 32 clients
            n = 0
            while time.time() < phase["stop_at"]:
                started, measured = time.perf_counter(), time.time() > phase["warm_until"]
                try:
                    connection.predict(PROMPTS[(c + n) % len(PROMPTS)], seed=c * 100_000 + n, api_name="/generate")
                    if measured:
                        with lock:
                            latencies.append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    with lock:
                        failures.append(repr(exc)[:200])
                n += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, phase["warm_until"] - time.time()))
        after_warm_up = process_state(server.process.pid, outputs)
        for t in threads:
            t.join()
        time.sleep(2)
        at_end = process_state(server.process.pid, outputs)
        alive = server.alive()
    finally:
        server.stop()
    info = env.device_info(torch.device("cpu"))
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    result = {"clients": args.clients, "minutes": args.minutes, "answered": len(latencies), "failed": len(failures),
              "failures": failures[:20], "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
              "after_warm_up": after_warm_up, "at_end": at_end, "server_alive": alive,
              "rss_growth": at_end["rss_mb"] / after_warm_up["rss_mb"] - 1}
    table = Table(f"soak: {args.clients} clients for {args.minutes:g} min ({args.server_args or 'local backend'})",
                  ["", "RSS MB", "open files", "threads", "outputs", "outputs MB"])
    for label, state in (("after warm-up", after_warm_up), ("at the end", at_end)):
        table.add(label, state["rss_mb"], state["open_files"], state["threads"], state["outputs"],
                  state["outputs_mb"])
    table.notes += [f"{len(latencies)} requests answered, {len(failures)} failed; latency p50 {result['p50_s']:.2f} s, "
                    f"p95 {result['p95_s']:.2f} s; resident memory {100 * result['rss_growth']:+.1f}%",
                    f"{info['name']}; flags {', '.join(info.get('cpu_flags', [])) or '-'}; load average at the end "
                    f"{os.getloadavg()[0]:.1f}"]
    print(table.text())
    stamp = datetime.date.today().isoformat()
    stem = f"{env.device_slug(info)}-{stamp}-soak"
    write_text_atomic(args.out / f"{stem}.json", json.dumps({"meta": {"device": info, "date": stamp,
                                                                      "commit": env.git_commit()},
                                                             "result": result}, indent=2) + "\n")
    write_text_atomic(args.out / f"{stem}.md", f"# Soak, {stamp}\n\n{table.markdown()}")
    return 0 if alive and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
