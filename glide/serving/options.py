"""The serving flags: which backend, and how the Ray Serve application is deployed.

Ray-free and torch-free, so that the command lines can offer the options without importing either.
"""
import argparse
from dataclasses import dataclass
from typing import Optional

from ..errors import UserError

APP_NAME = "glide"
DEPLOYMENT = "GlideReplica"
BACKENDS = ("local", "ray")


@dataclass
class ServeConfig:
    """How the Serve application is deployed."""

    replicas: int = 1
    min_replicas: Optional[int] = None      # with max_replicas: autoscale between them
    max_replicas: Optional[int] = None
    gpus_per_replica: float = 0.0           # fractions share a GPU between replicas
    cpus_per_replica: float = 1.0
    threads: Optional[int] = None           # torch threads per replica on a CPU (None: one per reserved CPU)
    max_batch: int = 8                      # images per batched run
    dtype: str = "auto"                     # each replica resolves "auto" on its own device
    checkpoint_dir: Optional[str] = None
    preview_every: int = 5

    def check(self) -> "ServeConfig":
        if self.replicas < 1 or self.max_batch < 1 or self.cpus_per_replica <= 0 or self.gpus_per_replica < 0:
            raise UserError("replicas, max_batch and cpus per replica must be positive, gpus per replica >= 0")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise UserError("give both --min-replicas and --max-replicas to autoscale, or neither")
        if self.max_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:
            raise UserError(f"--min-replicas {self.min_replicas} must be from 0 to --max-replicas {self.max_replicas}")
        return self


def add_options(parser: argparse.ArgumentParser) -> None:
    """The Ray Serve options of `app.py --backend ray` and `python -m glide serve`."""
    group = parser.add_argument_group("Ray Serve")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="attach to a running Ray cluster ('auto', or ray://host:10001); default: start a local Ray")
    group.add_argument("--ray-cpus", type=int, metavar="N", help="CPUs a local Ray may use (default: all)")
    group.add_argument("--replicas", type=int, help="replicas to deploy (each loads the models once; default 1 when "
                                                    "starting a local Ray, else attach to the running application)")
    group.add_argument("--gpus-per-replica", type=float, default=0.0, metavar="G",
                       help="GPUs each replica reserves (fractions share a GPU; default 0: the CPU)")
    group.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C", help="CPUs each replica reserves")
    group.add_argument("--min-replicas", type=int, help="autoscale: at least this many replicas (with --max-replicas)")
    group.add_argument("--max-replicas", type=int, help="autoscale: at most this many replicas")


def config_of(args, max_batch: int, dtype: str = "auto", checkpoint_dir=None) -> ServeConfig:
    return ServeConfig(replicas=args.replicas or 1, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                       gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica,
                       max_batch=max_batch, dtype=dtype,
                       checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None).check()


def deploys(args) -> bool:
    """Whether the command deploys (or updates) the application rather than only attaching to it."""
    return not args.ray_address or args.replicas is not None or args.max_replicas is not None
