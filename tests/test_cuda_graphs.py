"""CUDA-graph replay (glide.cuda_graphs): its bookkeeping on the CPU, with a stand-in for the capture.

The stand-in has a real graph's semantics: a replay recomputes the captured call from the *static*
inputs into the *static* output, so a wrapper that forgot to copy new inputs in, or handed out the
static output itself, gives wrong answers here as it would on a GPU. CUDA itself is not exercised:
CI has no GPU (`python -m bench --cuda-graphs` measures the real thing on one).
"""
import numpy as np
import pytest
import torch

import samplers
from bench import cli, sections
from bench.report import Table
from bench.sections import common, sample
from glide import cuda_graphs
from glide.cuda_graphs import GraphedModel
from glide.families import get_family
from glide.pipeline import Pipeline


@pytest.fixture
def fake_cuda(monkeypatch):
    """CPU tensors count as replayable; a capture records the call, and counts captures."""
    captures = []

    def capture(fn, device):
        output = fn()
        captures.append(fn)
        return (lambda: output.copy_(fn())), output

    monkeypatch.setattr(cuda_graphs, "_replayable", lambda device: True)
    monkeypatch.setattr(cuda_graphs, "_capture", capture)
    return captures


class Affine(torch.nn.Module):
    """A model whose output depends on every kind of argument the samplers pass: x, t, nested kwargs."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.tokenizer = "its own attribute"

    def forward(self, x, timesteps, text_emb=None, low_res=None):
        out = x * self.scale + timesteps.view(-1, 1, 1, 1).float()
        if text_emb is not None:
            out = out + text_emb["xf_proj"].view(-1, 1, 1, 1)
        if low_res is not None:
            out = out + low_res
        return out


def call_args(batch, seed):
    gen = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(batch, 3, 4, 4, generator=gen),
                timesteps=torch.randint(0, 1000, (batch,), generator=gen),
                text_emb={"xf_proj": torch.randn(batch, generator=gen)},
                low_res=torch.randn(batch, 3, 4, 4, generator=gen))


def test_replays_compute_what_the_model_computes_for_new_inputs(fake_cuda):
    model = Affine()
    graphed = GraphedModel(model)
    with torch.no_grad():
        results = [(graphed(**call_args(2, seed)), model(**call_args(2, seed))) for seed in range(4)]
    assert all(torch.equal(got, want) for got, want in results)
    assert len(fake_cuda) == 1 and graphed.captured == 1       # one shape: captured once, replayed after
    # What a call returns is the caller's: later replays do not rewrite it.
    first = results[0][0].clone()
    with torch.no_grad():
        graphed(**call_args(2, 99))
    assert torch.equal(results[0][0], first)


def test_each_signature_has_its_own_graph_and_old_ones_are_dropped(fake_cuda):
    graphed = GraphedModel(Affine(), max_graphs=2)
    with torch.no_grad():
        graphed(**call_args(2, 0))
        graphed(**call_args(4, 0))                              # another batch size
        graphed(**{**call_args(2, 0), "low_res": None})         # another call structure
        assert len(fake_cuda) == 3 and graphed.captured == 2    # the least recently used one went
        graphed(**call_args(4, 1))                              # still there: replayed
        assert len(fake_cuda) == 3
        with torch.autocast("cpu", dtype=torch.bfloat16):       # another autocast state
            graphed(**call_args(4, 1))
    assert len(fake_cuda) == 4
    with torch.inference_mode():                                # inference tensors cannot be refilled outside it
        graphed(**call_args(4, 1))
    assert len(fake_cuda) == 5


def test_new_weights_are_captured_anew(fake_cuda):
    """A graph reads the weight tensors it was captured with: after `.to(...)`, `.half()` or a replaced
    parameter, replaying it would use the old ones."""
    model = Affine()
    graphed = GraphedModel(model)
    with torch.no_grad():
        graphed(**call_args(2, 0))
        model.scale.data = torch.tensor(5.0)
        assert torch.equal(graphed(**call_args(2, 0)), model(**call_args(2, 0)))
    assert len(fake_cuda) == 2


def test_grad_other_devices_and_failed_captures_run_eagerly(fake_cuda, monkeypatch):
    model = Affine()
    graphed = GraphedModel(model)
    args = call_args(2, 0)
    out = graphed(**args)                                       # grad enabled: training, or a gradient guide
    assert out.requires_grad and not fake_cuda
    monkeypatch.setattr(cuda_graphs, "_replayable", lambda device: device.type == "cuda")
    with torch.no_grad():
        graphed(**args)                                         # a CPU tensor with the real device test
    assert not fake_cuda

    monkeypatch.setattr(cuda_graphs, "_replayable", lambda device: True)

    def failing_capture(fn, device):
        fake_cuda.append(fn)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graphs, "_capture", failing_capture)
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match="capture failed.*not permitted"):
            first = graphed(**args)
        second = graphed(**args)                                # not retried: eager from now on
    assert torch.equal(first, model(**args)) and torch.equal(second, first)
    assert len(fake_cuda) == 1 and graphed.captured == 0


def test_it_stands_in_for_the_model():
    model = Affine()
    graphed = GraphedModel(model)
    assert graphed.tokenizer == "its own attribute" and next(graphed.parameters()) is model.scale


def test_the_pipeline_samples_the_same_images_through_graphs(fake_cuda):
    family = get_family("shapes")
    plain = Pipeline(family)
    graphed = Pipeline(family)
    graphed._components = plain._components                     # the same loaded models
    graphed.cuda_graphs = True                                  # on the CPU only with the stand-in capture
    kwargs = dict(seed=3, steps=4, upsample_steps="3")
    want = plain.generate(["a small red circle on the left on a blue background"], **kwargs)
    got = graphed.generate(["a small red circle on the left on a blue background"], **kwargs)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got.images, want.images))
    assert {name: g.captured for name, g in graphed._graphed.items()} == {"base": 1, "upsample": 1}
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device, got cpu"):
        Pipeline(family, cuda_graphs=True)


def test_the_bench_samples_through_graphs_when_asked(fake_cuda, monkeypatch):
    def cpu_pipeline(*args, cuda_graphs=False, **kwargs):   # as in the pipeline test: graphs on a CPU
        pipe = Pipeline(*args, **kwargs)
        pipe.cuda_graphs = cuda_graphs
        return pipe

    monkeypatch.setattr(common, "Pipeline", cpu_pipeline)
    args = cli.parse_args(["--quick", "--fast-base-steps", "2", "--fast-upsample-steps", "2"])
    settings = {k: getattr(args, k) for k in ("ref_base_steps", "ref_upsample_steps", "fast_base_steps",
                                              "fast_upsample_sampler", "fast_upsample_steps", "sample_settings")}
    b = sections.Bench(torch.device("cpu"), quick=True, full=False, compile=False, args=settings, cuda_graphs=True)
    assert not b.cuda_graphs and "fast-graphs" not in sample.sample_settings(b)   # a CPU has no CUDA graphs
    b.cuda_graphs = True
    setting = sample.sample_settings(b)["fast-graphs"]
    assert setting.cuda_graphs and setting.dtype == "float32"
    assert samplers.get_registry().step_rule(setting.stages[0].sampler).name == "dpm++2m"
    # The setting's run: an untimed one-step pass captures both stages' graphs, then the timed run replays.
    b.args["sample_settings"] = ["fast-graphs"]
    table = Table("sample", ["setting", "stage", "sampler", "steps", "model batch", "ms/step", "stage s",
                                      "total s", "peak MB", "how"])
    [result] = sample._run_settings(b, images=1, stop_after=None, repeats=1, table=table)
    assert result["status"] == "ok" and result["capture_s"] > 0, result
    assert [r["total_steps"] for r in result["stages"]] == [2, 2]
    graphed = b.pipeline("float32", cuda_graphs=True)._graphed    # the pipeline's own stages ran the graphs
    assert len(fake_cuda) == 2 and graphed["base"].captured == 1 and graphed["upsample"].captured == 1
    assert any("captured first" in note for note in table.notes)

