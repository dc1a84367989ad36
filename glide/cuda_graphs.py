"""CUDA-graph replay of a model's forward pass: one graph per input signature, captured on first use.

At one image's batch a GLIDE sampling step is bound by the host, not the GPU: a forward is ~1,300
operator calls through Python and the dispatcher, which took ~28 ms per step on an H200 while its
kernels need a few. A CUDA graph records the kernels of one forward once; a replay launches them
all at once. The inputs of each call are copied into the graph's own (static) input tensors, and
the output is cloned out of its static output, so callers see an ordinary function.

`GraphedModel(model)` is a drop-in for the model in `samplers.sample`. It replays only what a graph
can replay: inference (grad disabled) on CUDA tensors. A call with grad enabled, on another device,
or whose capture failed runs the model eagerly, so wrapping never changes what a call computes.
"""
import contextlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch.utils import _pytree as pytree

# Distinct input signatures kept captured (batch sizes, dtypes, ...); the least recently used one
# is dropped beyond this, freeing its memory pool, so a server sees bounded memory.
MAX_GRAPHS = 8
# Eager calls before a capture: cuDNN picks its algorithms and the allocator warms up outside the
# graph (PyTorch's documented recipe).
WARMUP_CALLS = 2


@dataclass
class _Graph:
    replay: Callable[[], None]
    inputs: List[torch.Tensor]     # static copies of the call's tensors, in flattening order
    output: torch.Tensor           # rewritten by every replay


def _capture(fn: Callable[[], torch.Tensor], device: torch.device) -> Tuple[Callable[[], None], torch.Tensor]:
    """(replay, static output) of `fn`, captured into a CUDA graph after warm-up calls on a side stream."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP_CALLS):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: other threads (a server's other jobs) may keep launching work during the capture.
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        output = fn()
    return graph.replay, output


def _replayable(device: torch.device) -> bool:
    return device.type == "cuda"


def _on(device: torch.device):
    """The device made current: a capture records, and a replay launches, on the current device's stream."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class GraphedModel(torch.nn.Module):
    """`model`, with its inference forward passes replayed from CUDA graphs (see the module docstring).

    Attributes other than `forward` (tokenizer, encode_text, parameters, ...) are the model's own.
    Thread-safe for callers on the default stream (the pipeline's and the demo's workers): the copies
    in, the replay and the copy out are one critical section, in the order the GPU runs them. Threads
    on streams of their own would need to synchronise around calls themselves.
    """

    def __init__(self, model: torch.nn.Module, max_graphs: int = MAX_GRAPHS):
        super().__init__()
        self.model = model
        self.max_graphs = max_graphs
        self._graphs: "OrderedDict[tuple, _Graph]" = OrderedDict()
        self._failed = set()      # signatures whose capture failed: they run eagerly
        self._lock = threading.Lock()

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    @property
    def captured(self) -> int:
        """How many input signatures have a graph."""
        return len(self._graphs)

    def forward(self, *args, **kwargs):
        leaves, spec = pytree.tree_flatten((args, kwargs))
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        if torch.is_grad_enabled() or not tensors or not _replayable(tensors[0].device):
            return self.model(*args, **kwargs)
        device = tensors[0].device
        key = self._signature(leaves, spec, device)
        if key is None or key in self._failed:
            return self.model(*args, **kwargs)
        with self._lock, _on(device):
            if key not in self._graphs:
                graph = self._capture(leaves, spec, tensors)
                if graph is None:
                    self._failed.add(key)
                    return self.model(*args, **kwargs)
                self._graphs[key] = graph
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            self._graphs.move_to_end(key)
            graph = self._graphs[key]
            for static, given in zip(graph.inputs, tensors):
                static.copy_(given)
            graph.replay()
            return graph.output.clone()

    def _signature(self, leaves, spec, device) -> Optional[tuple]:
        """What a graph is specific to: the call's structure, each tensor's shape, dtype, device and
        layout, the other arguments' values, the autocast and inference-mode state, and the weights'
        storage (a graph reads the tensors it was captured with: `model.half()` or `.to(...)` makes
        new ones); None when not hashable."""
        parts = tuple((tuple(x.shape), x.dtype, x.device, x.stride()) if isinstance(x, torch.Tensor) else ("value", x)
                      for x in leaves)
        weights = tuple(p.data_ptr() for p in self.model.parameters())
        key = (spec, parts, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type),
               torch.is_inference_mode_enabled(), self.model.training, weights)
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _capture(self, leaves, spec, tensors) -> Optional[_Graph]:
        static = [t.clone() for t in tensors]
        refill = iter(static)
        args, kwargs = pytree.tree_unflatten([next(refill) if isinstance(x, torch.Tensor) else x for x in leaves], spec)
        device = tensors[0].device
        autocast_on = torch.is_autocast_enabled(device.type)
        autocast_dtype = torch.get_autocast_dtype(device.type)

        def forward():
            # Autocast's cast cache must not outlive a capture: the graph would replay stale casts.
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_on, cache_enabled=False):
                return self.model(*args, **kwargs)

        try:
            replay, output = _capture(forward, device)
        except Exception as e:  # e.g. an op that synchronises with the host cannot be captured
            warnings.warn(f"CUDA-graph capture failed ({type(e).__name__}: {e}); running this input shape "
                          "eagerly", RuntimeWarning, stacklevel=3)
            return None
        return _Graph(replay=replay, inputs=static, output=output)
