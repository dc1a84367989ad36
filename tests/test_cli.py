"""The `glide` command line on the shapes family: in-process through `glide.cli.main(argv)` (one pipeline
loaded for the whole session), and once as users run it, `python -m glide` in a subprocess.

Step counts are tiny: these tests check files, sizes, settings and error reporting, not image quality.
"""
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from glide.cli import main
from glide.pngmeta import read_settings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "a small red circle on the left on a blue background"
FAST = ["--steps", "3", "--upsample-steps", "3"]


def glide(*args, cwd, **env):
    """Run `glide ARGS` in-process in `cwd` with `env` set: returncode, stdout and stderr as text."""
    out, err, saved = io.StringIO(), io.StringIO(), {k: os.environ.get(k) for k in env}
    previous = os.getcwd()
    os.environ.update({k: str(v) for k, v in env.items()})
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
    finally:
        os.chdir(previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_python_m_glide_as_users_run_it(tmp_path):
    """The one subprocess run: the entry point works, `--help` answers without importing torch."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO_ROOT}
    helped = subprocess.run([sys.executable, "-c", "import sys; from glide.cli import main\n"
                             "try: main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and helped.stdout.strip().endswith("False"), helped.stderr
    proc = subprocess.run([sys.executable, "-m", "glide", "generate", PROMPT, "--steps", "2", "--no-upsample",
                           "--seed", "4"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_settings(tmp_path / proc.stdout.strip())["seed"] == 4


def ok(proc) -> list:
    """The non-empty stdout lines of a run that must have succeeded."""
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def upsampled(work):
    """One upsampled image, made with a step-rule and a guidance parameter given on the command line, and the
    upsampler's rule (the family's default is DDIM)."""
    proc = glide("generate", PROMPT, *FAST, "--seed", 7, "--sampler", "ddim", "--param", "eta=0.5", "--guidance-scale", 4,
                 "--upsample-sampler", "ddpm", "--out", "up", cwd=work)
    (line,) = ok(proc)
    return work / line


def test_generate_upsampled(upsampled):
    assert upsampled.name == "000-seed7.png"
    assert Image.open(upsampled).size == (128, 128)
    settings = read_settings(upsampled)
    assert settings["prompt"] == PROMPT and settings["seed"] == 7 and settings["upsample"] is True
    # --param is routed to the plugin that declares it; --guidance-scale fills the strategy's scale.
    assert settings["sampler_params"] == {"eta": 0.5}
    assert settings["guidance_params"] == {"guidance_scale": 4.0, "interval": ""}
    assert (settings["upsample_sampler"], settings["upsample_steps"]) == ("ddpm", 3)


def test_generate_base_batch_then_from_png(work):
    paths = [work / p for p in ok(glide("generate", PROMPT, "--no-upsample", "--steps", 3, "--seed", 5,
                                        "--batch-size", 2, "--out", "base", cwd=work))]
    assert [p.name for p in paths] == ["000-seed5.png", "001-seed6.png"]
    assert all(Image.open(p).size == (32, 32) for p in paths)
    assert [read_settings(p)["seed"] for p in paths] == [5, 6]

    # Batch item 1 regenerates alone from its PNG, to a new file (nothing is overwritten), to within one
    # 8-bit level (a batch's arithmetic sums in another order than a single image's).
    (again,) = ok(glide("generate", "--from-png", paths[1], "--out", "base", cwd=work))
    again = work / again
    assert again.name == "002-seed6.png"
    assert np.abs(pixels(again).astype(int) - pixels(paths[1])).max() <= 1
    assert read_settings(again) == read_settings(paths[1])
    # Made alone, it regenerates exactly.
    (twice,) = ok(glide("generate", "--from-png", again, "--out", "base", cwd=work))
    assert np.array_equal(pixels(work / twice), pixels(again))


def test_inpaint_keeps_the_unmasked_half(work, upsampled):
    mask = Image.new("L", (64, 32), 0)   # another size than the picture's: resized to it
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 31), fill=255)  # white = replace the left half
    mask.save(work / "mask.png")
    (line,) = ok(glide("inpaint", upsampled, "mask.png", "a big green square", *FAST, "--out", "inpainted",
                       cwd=work))
    result = work / line
    assert sorted(p.name for p in (work / "inpainted").iterdir()) == [result.name]
    assert Image.open(result).size == (128, 128)
    assert read_settings(result)["mode"] == "inpaint"
    # Outside the mask the result is the picture's own pixels (the edit is put back only where the mask is).
    assert np.array_equal(pixels(result)[:, 64:], pixels(upsampled)[:, 64:])
    assert np.abs(pixels(result)[:, :64].astype(int) - pixels(upsampled)[:, :64]).mean() > 5  # the left changed


def test_upsample_given_images(work):
    Image.new("RGB", (48, 40), "blue").save(work / "small.png")
    lines = ok(glide("upsample", "small.png", "small.png", "--prompt", "a blue background", "--steps", 2,
                     "--seed", 3, "--out", "sr", cwd=work))
    assert [os.path.basename(line) for line in lines] == ["000-seed3.png", "001-seed4.png"]
    settings = read_settings(work / lines[0])
    assert Image.open(work / lines[0]).size == (128, 128)
    assert settings["mode"] == "upsample" and settings["upsample_steps"] == 2


def test_compare_grid(work):
    lines = ok(glide("compare", PROMPT, "--steps", 2, "--seeds", 2, "--scales", "1,3", "--cfg-scale", 4,
                     "--out", "cmp", cwd=work))
    grid = work / lines[-1]
    # Rows: clip at 1 and 3 (its own), classifier-free at 1, 3 and 4 (its own), then the unguided model once;
    # then the verdict on the most faithful row.
    assert lines[0].split()[:4] == ["strategy", "scale", "fidelity", "spread"] and len(lines) == 1 + 6 + 1 + 1
    assert [line.split()[:2] for line in lines[1:7]] == [
        ["clip", "1"], ["clip", "3"], ["classifier-free", "1"], ["classifier-free", "3"], ["classifier-free", "4"],
        ["none", "-"]]
    assert all("drawn right" in line and "spread" in line for line in lines[1:7])
    width, height = Image.open(grid).size
    assert width >= 2 * 256 and height >= 6 * 256   # two seeds a row
    settings = read_settings(grid)
    assert settings["mode"] == "compare" and len(settings["seeds"]) == 2 and len(settings["results"]) == 6


def test_models_table(work):
    lines = ok(glide("models", cwd=work))
    assert lines[0].split()[:4] == ["name", "ready", "size", "licence"]
    assert lines[1].startswith("shapes") and "yes" in lines[1]
    assert any(line.startswith("glide-filtered") for line in lines)


def test_samplers_json(work):
    described = json.loads(glide("samplers", "--json", cwd=work).stdout)
    assert {"ddim", "ddpm"} <= {p["name"] for p in described["step_rules"]}
    cfg = next(p for p in described["guidance"] if p["name"] == "classifier-free")
    assert cfg["params"][0]["name"] == "guidance_scale" and cfg["params"][0]["type"] == "float"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_clean_error(proc, *fragments):
    """Exit code 2 and a single `error: ...` line on stderr naming `fragments`, without a traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model(work):
    assert_clean_error(glide("generate", PROMPT, "--model", "nope", cwd=work), "unknown model 'nope'", "shapes")


def test_unknown_sampler(work):
    assert_clean_error(glide("generate", PROMPT, "--sampler", "euler", "--no-upsample", cwd=work),
                       "unknown step rule 'euler'", "ddim")


def test_offline_download(tmp_path):
    mirror = f"http://127.0.0.1:{closed_port()}"
    proc = glide("download", "--checkpoint-dir", tmp_path / "ckpt", cwd=tmp_path, GLIDE_DOWNLOAD_URL=mirror)
    # The message names the file, the URL it came from and where to put it by hand.
    assert_clean_error(proc, "base.pt", f"{mirror}/base.pt", str(tmp_path / "ckpt" / "base.pt"))
    assert not list((tmp_path / "ckpt").glob("*.pt"))


def test_empty_mask(work, upsampled):
    Image.new("L", (64, 64), 0).save(work / "empty.png")
    assert_clean_error(glide("inpaint", upsampled, "empty.png", PROMPT, "--no-upsample", cwd=work),
                       "the mask is empty")


def test_unreadable_image(work):
    (work / "x.png").write_text("not a picture")
    Image.new("L", (64, 64), 255).save(work / "white.png")
    assert_clean_error(glide("inpaint", "x.png", "white.png", PROMPT, cwd=work), "x.png")


def test_cuda_graphs_need_a_cuda_device(work):
    assert_clean_error(glide("generate", PROMPT, "--cuda-graphs", cwd=work), "cuda_graphs needs a CUDA device")


@pytest.mark.parametrize("args,fragment", [
    (["generate", PROMPT, "--steps=-3", "--no-upsample"], "steps must be a number of steps from 1"),
    (["generate", PROMPT, "--upsample-steps", "0,0"], "upsample_steps must be a number of steps from 1"),
    (["generate", PROMPT, "--guidance", "none", "--guidance-scale", "5"], "'none' has no scale"),
    (["compare", PROMPT, "--seeds", "0"], "seeds must be between 1 and"),
])
def test_impossible_or_ignored_settings_are_errors(work, args, fragment):
    assert_clean_error(glide(*args, cwd=work), fragment)


def test_a_decompression_bomb_is_refused(work):
    Image.new("1", (20000, 20000)).save(work / "bomb.png")        # 48 KB on disk, 400 megapixels decoded
    Image.new("RGB", (100, 100), "blue").save(work / "square.png")
    assert_clean_error(glide("inpaint", "bomb.png", "square.png", PROMPT, cwd=work), "bomb.png", "exceeds limit")


def seed_help() -> str:
    from glide.cli import build_parser

    generate = build_parser()._subparsers._group_actions[0].choices["generate"]
    return next(a.help for a in generate._actions if "--seed" in a.option_strings)


def test_the_seed_default_is_what_the_help_says(work):
    """Without --seed each run draws its own seeds (recorded in the PNG), and the help says so."""
    assert "random" in seed_help() and "default 0" not in seed_help()
    seeds = {read_settings(work / line)["seed"]
             for _ in range(2) for line in ok(glide("generate", PROMPT, "--steps", 1, "--no-upsample", "--out",
                                                    "random-seeds", cwd=work))}
    assert len(seeds) == 2, f"two runs without --seed both used seed {seeds}"


def test_preset_fast_fills_what_the_flags_leave_out(work):
    (path,) = ok(glide("generate", PROMPT, "--preset", "fast", "--upsample-steps", 2, "--seed", 3,
                       "--out", "preset", cwd=work))
    settings = read_settings(work / path)
    assert (settings["sampler"], settings["steps"], settings["upsample_sampler"], settings["upsample_steps"]) == (
        "dpm++3m", 6, "ddim", 2)
    assert settings["guidance_params"]["interval"] == "0.28,5.42"
    proc = glide("generate", PROMPT, "--preset", "quick", cwd=work)
    assert proc.returncode != 0 and "unknown preset 'quick'; choose one of: fast" in proc.stderr


def test_a_prompt_outside_the_grammar_is_warned_about(work):
    """The shapes family knows only its grammar's sentences: the CLI says so (as the demo and the API do), and
    says nothing for a sentence of it."""
    outside = glide("generate", "a red circle on a blue background", "--steps", 1, "--no-upsample", cwd=work)
    assert outside.returncode == 0 and "warning: the shapes model only knows sentences like" in outside.stderr
    inside = glide("generate", PROMPT, "--steps", 1, "--no-upsample", cwd=work)
    assert inside.returncode == 0 and "warning" not in inside.stderr


def test_zero_steps_is_refused_not_read_as_the_default(work):
    refused = glide("generate", PROMPT, "--steps", 0, "--no-upsample", cwd=work)
    assert refused.returncode == 2 and "steps must be between 1 and" in refused.stderr
