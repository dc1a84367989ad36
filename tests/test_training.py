"""Training code: the hybrid loss goes down, runs resume, inpainting fine-tunes start from their parent."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from glide.families import shapes as shapes_family
from glide.model_creation import create_model_and_diffusion
from glide.training import shapes as shapes_training
from glide.training.trainer import TrainConfig, build_trainer, load_expanding_inputs

TINY = dict(num_channels=32, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8", xf_width=32,
            xf_layers=1, xf_heads=1, image_size=16)


@pytest.fixture
def tiny_family(monkeypatch):
    """Shrink the family's base so a training step takes a fraction of a second."""
    options = {**shapes_family.MODEL_OPTIONS["base"], **TINY}
    monkeypatch.setitem(shapes_family.MODEL_OPTIONS, "base", options)
    monkeypatch.setitem(shapes_family.MODEL_OPTIONS, "base-inpaint", {**options, "inpaint": True})
    monkeypatch.setattr(shapes_family, "BASE_SIZE", 16)
    return options


def fixed_batch_loss(trainer, diffusion):
    """The loss on one fixed batch, fixed timesteps and noise (so before/after are comparable)."""
    rng = np.random.default_rng(99)
    make = shapes_training.batch_maker("base", shapes_family.load_tokenizer())
    x, kw = make(rng, 16)
    t = torch.arange(16) * 60
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return diffusion.training_losses(trainer.model, x, t, model_kwargs=kw, noise=noise)["loss"].mean().item()


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_resumes(tiny_family, tmp_path):
    cfg = TrainConfig(stage="base", out=str(tmp_path / "run"), steps=30, batch_size=8, lr=2e-3, warmup_steps=5,
                      save_every=15, log_every=10)
    trainer = build_trainer(cfg, torch.device("cpu"))
    _, diffusion = create_model_and_diffusion(**tiny_family, tokenizer=shapes_family.load_tokenizer())
    before = fixed_batch_loss(trainer, diffusion)
    trainer.run()
    after = fixed_batch_loss(trainer, diffusion)
    assert after < 0.8 * before, (before, after)

    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 30 and len(state["log"]) == 3
    resumed = build_trainer(TrainConfig(**{**cfg.__dict__, "steps": 35}), torch.device("cpu"))
    assert resumed.step == 30
    assert all(torch.equal(resumed.model.state_dict()[k], v) for k, v in trainer.model.state_dict().items())
    resumed.run()
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 35


def test_inpainting_fine_tune_starts_at_the_parent(tiny_family):
    encoder = shapes_family.load_tokenizer()
    torch.manual_seed(0)
    base, _ = create_model_and_diffusion(**tiny_family, tokenizer=encoder)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    inpaint, _ = create_model_and_diffusion(**{**tiny_family, "inpaint": True}, tokenizer=encoder)
    load_expanding_inputs(inpaint, base.state_dict())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    tokens, mask = shapes_family.tokenize(encoder, ["a red circle", ""])
    with torch.no_grad():
        expected = base(x, t, tokens=tokens, mask=mask)
        got = inpaint(x, t, tokens=tokens, mask=mask, inpaint_image=torch.rand(2, 3, 16, 16),
                      inpaint_mask=torch.ones(2, 1, 16, 16))
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_side_by_side_stages_start_fine_tunes_from_a_parent_snapshot(tmp_path, capsys):
    """The GPU recipe's scheduler (run here on the CPU): parallel processes, a fine-tune that waits for its
    parent's first checkpoint, and a stage that fails without stopping the others."""
    from glide.training.default import Stage, run_side_by_side

    stages = [Stage("base", 0.15, 2, 1e-3, workers=1),
              Stage("base-inpaint", 0.05, 2, 1e-3, parent="base", start=0.01),
              Stage("no-such-stage", 0.05, 2, 1e-3)]
    done, failed = run_side_by_side(stages, tmp_path, minutes_scale=1.0, poll_s=0.1)
    assert set(done) == {"base", "base-inpaint"} and failed == ["no-such-stage"]
    parent_step = done["base-inpaint"][1]
    assert parent_step >= 1
    snapshot = load_file(tmp_path / "base-inpaint" / "init.safetensors")
    assert snapshot.keys() == load_file(tmp_path / "base" / "ema.safetensors").keys()
    child = json.loads((tmp_path / "base-inpaint" / "state.json").read_text())
    assert child["step"] >= 1 and child["config"]["init_from"].endswith("init.safetensors")
    assert "from base step" in capsys.readouterr().out
