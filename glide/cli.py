"""The `glide` command line (also `python -m glide`): generate, inpaint, compare, download, models, samplers.

    glide generate "a small red circle on the left on a blue background" --seed 3 --steps 25
    glide generate --from-png outputs/000-seed3.png --guidance-scale 5
    glide inpaint photo.png mask.png "a blue square"
    glide compare "a big green triangle" --scales 1,3,6
    glide download --model glide-filtered
    glide models
    glide samplers --json

Every PNG written carries the settings that made it, so `--from-png` regenerates it (flags given on
the command line override the stored settings). Expected failures — a bad prompt, image, mask or
sampler parameter, a missing or undownloadable model — print `error: <message>` and exit with 2.

The torch-based modules are imported inside the commands so that `glide --help` answers at once.
"""
import argparse
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from tqdm.auto import tqdm

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

# Settings recorded in a PNG that are also keyword arguments of Pipeline.generate / inpaint.
_RUN_SETTINGS = ("seed", "sampler", "sampler_params", "steps", "guidance", "guidance_params", "negative_prompt",
                 "upsample", "upsample_steps", "upsample_sampler", "upsample_temp")
# Command-line flags that map one-to-one onto those keyword arguments.
_RUN_FLAGS = ("seed", "batch_size", "sampler", "steps", "guidance", "negative_prompt", "upsample",
              "upsample_sampler", "upsample_steps", "upsample_temp")

COMPARE_TILE = 256  # px: comparison images are scaled up (nearest) to this, so 32 px samples stay legible
_CAPTION_FONT_SIZE = 13
_CAPTION_LINES = 3  # see _caption


class UsageError(ValueError):
    """A problem with what the command line names (a file, a prompt); the message says what to fix.

    Raised before any model is imported or loaded, so such mistakes are reported at once.
    """


# ------------------------------------------------------------------------------------------ argument types
def _steps(text: str):
    """A step count ("25") or a respacing spec the samplers understand ("fast27", "ddim50")."""
    return int(text) if text.isdigit() else text


def _param(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _scales(text: str) -> List[float]:
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1,3,6, got {text!r}") from None
    if not scales:
        raise argparse.ArgumentTypeError("give at least one scale")
    return scales


def _names(text: str) -> List[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names like clip,none, got {text!r}")
    return names


# ------------------------------------------------------------------------------------------ helpers
class _Progress:
    """A tqdm bar per sampling stage, driven by the pipeline's callback(stage, step, total, x0_preview).

    Bars show only when stderr is a terminal (tqdm's `disable=None`), so logs and pipes stay clean.
    """

    def __init__(self):
        self.bar = None

    def __call__(self, stage: str, step: int, total: int, _x0_preview) -> None:
        # Step 0 starts a new run of a stage: the next stage, or the next strategy in a comparison.
        if self.bar is None or step == 0:
            self.close()
            self.bar = tqdm(total=total, desc=stage, unit="step", disable=None, leave=False)
        self.bar.update(step + 1 - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def _open_image(path: Path, what: str) -> Image.Image:
    """The image at `path`, decoded now so that a bad file fails before any model loads."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise UsageError(f"the {what} file {path} does not exist") from None
    except UnidentifiedImageError:
        raise UsageError(f"cannot read the {what} file {path}: it is not an image (PNG, JPEG, ...)") from None
    except Image.DecompressionBombError as exc:  # PIL's guard against a small file that decodes to gigabytes
        raise UsageError(f"cannot read the {what} file {path}: {exc}") from None
    except OSError as exc:  # a folder, no permission, a truncated image
        raise UsageError(f"cannot read the {what} file {path}: {exc}") from None
    return image


def _load_pipeline(args, saved: Optional[Dict] = None):
    """The pipeline of --model, else of the --from-png settings' model, else of the embedded shapes."""
    from .pipeline import check_device, load_pipeline

    device = check_device(args.device)
    model = args.model or (saved or {}).get("model") or "shapes"
    return load_pipeline(model, device, args.dtype, args.checkpoint_dir, cuda_graphs=args.cuda_graphs)


def _reserve_path(out_dir: Path, suffix: str) -> Path:
    """A new file `NNN-<suffix>.png` in `out_dir`, NNN one past the highest index already there.

    The file is created empty at once (exclusive create), so two runs writing to the same folder never
    pick the same name; save_png then replaces it atomically.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.fullmatch(r"(\d+)-.*\.png", p.name))]
    index = max(taken, default=-1) + 1
    while True:
        path = out_dir / f"{index:03d}-{suffix}.png"
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            index += 1


def _saved_settings(args, mode: str) -> Dict:
    """The settings embedded in --from-png (empty without it); they must come from the same command."""
    if not args.from_png:
        return {}
    from .pngmeta import read_settings

    settings = read_settings(_open_image(args.from_png, "--from-png"))
    if settings is None:
        raise UsageError(f"{args.from_png} carries no glide settings (it was not written by glide)")
    if settings.get("mode") != mode:
        made_by = f"was made by `glide {settings['mode']}`" if settings.get("mode") else "is not an image glide made"
        raise UsageError(f"{args.from_png} {made_by}, so it holds no `glide {mode}` settings")
    return settings


def _run_kwargs(args, saved: Dict) -> Dict:
    """Pipeline keyword arguments: the PNG's settings, with the flags given on the command line on top."""
    from samplers import SamplerError, get_registry

    from .pipeline import Pipeline

    kwargs = {k: saved[k] for k in _RUN_SETTINGS if k in saved}
    flags = {k: getattr(args, k) for k in _RUN_FLAGS if getattr(args, k) is not None}
    # Parameters stored for one step rule / strategy mean nothing to another one chosen by a flag.
    if flags.get("sampler", saved.get("sampler")) != saved.get("sampler"):
        kwargs.pop("sampler_params", None)
    if flags.get("guidance", saved.get("guidance")) != saved.get("guidance"):
        kwargs.pop("guidance_params", None)
    kwargs.update(flags)
    sampler_params = dict(kwargs.get("sampler_params") or {})
    guidance_params = dict(kwargs.get("guidance_params") or {})
    if args.guidance_scale is not None:
        kwargs["guidance_scale"] = args.guidance_scale
        # The pipeline lets guidance_params win over guidance_scale; the flag must win over the PNG.
        guidance_params.pop("guidance_scale", None)

    # Route each --param to the plugin that declares it (unset: the model's default rule, the pipeline's strategy).
    from .model_registry import get_family

    defaults = inspect.signature(Pipeline.generate).parameters
    registry = get_registry()
    model = args.model or saved.get("model") or "shapes"
    rule = registry.step_rule(kwargs.get("sampler") or get_family(model).default_sampler)
    strategy = registry.guidance_strategy(kwargs.get("guidance", defaults["guidance"].default))
    if args.guidance_scale is not None and not any(p.name == "guidance_scale" for p in strategy.params):
        raise UsageError(f"--guidance-scale: the guidance strategy {strategy.name!r} has no scale")
    for name, text in args.param:
        targets = [(plugin, params) for plugin, params in ((rule, sampler_params), (strategy, guidance_params))
                   if any(p.name == name for p in plugin.params)]
        if not targets:
            known = sorted({p.name for plugin in (rule, strategy) for p in plugin.params})
            raise SamplerError(f"neither the step rule {rule.name!r} nor the guidance strategy "
                               f"{strategy.name!r} has a parameter {name!r}; theirs: {known or 'none'}")
        for plugin, params in targets:
            params[name] = next(p for p in plugin.params if p.name == name).validate(text)
    kwargs.update(sampler_params=sampler_params, guidance_params=guidance_params)
    return kwargs


def _prompts(given: List[str], saved: Dict) -> List[str]:
    prompts = given or ([saved["prompt"]] if "prompt" in saved else [])
    if not prompts:
        raise UsageError("give a prompt, or --from-png FILE to reuse the prompt stored in a PNG")
    return prompts


def _write_images(result, out_dir: Path) -> List[Path]:
    return [_save_new(image, out_dir, f"seed{settings['seed']}", settings)
            for image, settings in zip(result.images, result.settings)]


def _save_new(image, out_dir: Path, suffix: str, settings: Dict) -> Path:
    """`image` with its settings as a new `NNN-<suffix>.png` in `out_dir` (see _reserve_path)."""
    from .pngmeta import save_png

    path = _reserve_path(out_dir, suffix)
    try:
        return save_png(image, path, settings)
    except BaseException:  # Ctrl-C or a full disk: no empty placeholder is left behind
        path.unlink(missing_ok=True)
        raise


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *rows])


def _size(n_bytes: int) -> str:
    if not n_bytes:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000


# ------------------------------------------------------------------------------------------ commands
def cmd_generate(args) -> int:
    saved = _saved_settings(args, "generate")
    prompts = _prompts(args.prompts, saved)
    kwargs = _run_kwargs(args, saved)
    pipe = _load_pipeline(args, saved)
    with _Progress() as progress:
        result = pipe.generate(prompts, callback=progress, **kwargs)
    for path in _write_images(result, args.out):
        print(path)
    return 0


def cmd_inpaint(args) -> int:
    image = _open_image(args.image, "image")
    mask = _open_image(args.mask, "mask")
    saved = _saved_settings(args, "inpaint")
    prompts = _prompts([args.prompt] if args.prompt else [], saved)
    kwargs = _run_kwargs(args, saved)
    pipe = _load_pipeline(args, saved)
    with _Progress() as progress:
        result = pipe.inpaint(image, mask, prompts, callback=progress, **kwargs)
    for path in _write_images(result, args.out):
        print(path)
    return 0


def cmd_upsample(args) -> int:
    images = [_open_image(path, "image") for path in args.images]
    pipe = _load_pipeline(args)
    with _Progress() as progress:
        result = pipe.upsample(images, args.prompt, sampler=args.sampler, steps=args.steps, seed=args.seed,
                               upsample_temp=args.upsample_temp, callback=progress)
    for path in _write_images(result, args.out):
        print(path)
    return 0


def _strategy_runs(args) -> List[List[Tuple[str, Dict]]]:
    """Grid rows: per strategy, one (name, params) per scale; strategies without a scale get one tile."""
    from samplers import get_registry

    registry = get_registry()
    names = args.strategies or ["clip", "classifier-free", "none"]
    rows = []
    for name in names:
        scale = next((p for p in registry.guidance_strategy(name).params if p.name == "guidance_scale"), None)
        if scale is None:
            rows.append([(name, {})])
        else:
            values = args.scales or [args.guidance_scale if args.guidance_scale is not None else scale.default]
            rows.append([(name, {"guidance_scale": v}) for v in values])
    return rows


def _checker_verdict(checker: Optional[Dict]) -> str:
    """The shapes checker's verdict in a word or two: match, or which attributes missed."""
    if checker is None:
        return ""
    if checker.get("all") is None:
        return "n/a"
    if checker["all"]:
        return "match"
    missed = [k for k in ("background", "count") if not checker[k]]
    missed += sorted({a for shape in checker["shapes"] for a, ok in shape.items() if not ok})
    return "miss: " + ",".join(missed)


def _caption(entry) -> List[str]:
    """A tile's caption: strategy and scale; seconds and CLIP score; the checker's verdict (if any)."""
    scale = entry.guidance_params.get("guidance_scale")
    lines = [entry.guidance + (f"  scale {scale:g}" if scale is not None else ""),
             f"{entry.seconds:.1f} s" + (f"  clip {entry.clip_score:.3f}" if entry.clip_score is not None else "")]
    verdict = _checker_verdict(entry.checker)
    return lines + [f"checker: {verdict}"] if verdict else lines


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, cut short with "..." to fit `width` pixels (the stdout table has it in full)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _grid(rows, title: str) -> Image.Image:
    """The comparison as one image: a title strip, then a row per strategy, a column per scale."""
    font = ImageFont.load_default(size=_CAPTION_FONT_SIZE)
    line = _CAPTION_FONT_SIZE + 4
    pad, caption = 8, _CAPTION_LINES * line + 4
    cell_w, cell_h = COMPARE_TILE + pad, COMPARE_TILE + caption + pad
    columns = max(len(r) for r in rows)
    grid = Image.new("RGB", (pad + columns * cell_w, pad + line + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((pad, pad), _fit(draw, title, font, grid.width - 2 * pad), fill="black", font=font)
    for r, row in enumerate(rows):
        for c, entry in enumerate(row):
            x, y = pad + c * cell_w, pad + line + r * cell_h
            grid.paste(entry.image.resize((COMPARE_TILE, COMPARE_TILE), Image.NEAREST), (x, y))
            for i, text in enumerate(_caption(entry)):
                draw.text((x, y + COMPARE_TILE + 2 + i * line), _fit(draw, text, font, COMPARE_TILE),
                          fill="black", font=font)
    return grid


def cmd_compare(args) -> int:
    if args.scales and args.guidance_scale is not None:
        raise UsageError("give --scales (a sweep) or --guidance-scale (one scale), not both")
    runs = _strategy_runs(args)
    pipe = _load_pipeline(args)
    with _Progress() as progress:
        entries = pipe.compare(args.prompt, [run for row in runs for run in row], seed=args.seed,
                               steps=args.steps, sampler=args.sampler, callback=progress)
    # compare returns the runs in order; cut them back into the grid's rows.
    it = iter(entries)
    rows = [[next(it) for _ in row] for row in runs]
    steps = entries[0].settings["steps"]
    sampler = entries[0].settings["sampler"]
    title = f"{args.prompt}  |  {pipe.name}, seed {args.seed}, {sampler} {steps} steps"
    settings = {"mode": "compare", "model": pipe.name, "prompt": args.prompt, "seed": args.seed,
                "sampler": sampler, "steps": steps,
                "results": [{"guidance": e.guidance, "guidance_params": e.guidance_params, "seconds": e.seconds,
                             "clip_score": e.clip_score, "checker": e.checker} for e in entries]}
    path = _save_new(_grid(rows, title), args.out, f"compare-seed{args.seed}", settings)
    table = [(e.guidance, f"{e.guidance_params['guidance_scale']:g}" if "guidance_scale" in e.guidance_params
              else "-", f"{e.seconds:.2f}", "-" if e.clip_score is None else f"{e.clip_score:.3f}",
              _checker_verdict(e.checker) or "-") for e in entries]
    print(_table(("strategy", "scale", "seconds", "clip", "checker"), table))
    print(path)
    return 0


def cmd_download(args) -> int:
    from .model_registry import download_family

    for path in download_family(args.model, args.checkpoint_dir, progress=sys.stderr.isatty()):
        print(path)
    return 0


def cmd_models(args) -> int:
    from .model_registry import list_models

    models = list_models(args.checkpoint_dir)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = []
    for m in models:
        ready = sum(c["ready"] for c in m["components"].values())
        rows.append((m["name"], f"{'yes' if m['ready'] else 'no'} ({ready}/{len(m['components'])})",
                     _size(m["bytes"]), m["license"], m["description"]))
    print(_table(("name", "ready", "size", "licence", "description"), rows))
    return 0


def cmd_samplers(args) -> int:
    from samplers import get_registry

    described = get_registry().describe()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for title, key in (("step rules (--sampler)", "step_rules"), ("guidance strategies (--guidance)", "guidance")):
        print(f"{title}:")
        width = max(len(p["name"]) for p in described[key])
        for plugin in described[key]:
            print(f"  {plugin['name'].ljust(width)}  {plugin['description']}")
            for q in plugin["params"]:
                bounds = "" if q["min"] is None and q["max"] is None else f", range [{q['min']}, {q['max']}]"
                print(f"  {' ' * width}  --param {q['name']}=  {q['type']}, default {q['default']}{bounds}"
                      + (f"  ({q['help']})" if q["help"] else ""))
    return 0


# ------------------------------------------------------------------------------------------ parser
def _model_options(parser) -> None:
    parser.add_argument("--model", help="model family: shapes (default, embedded) or glide-filtered")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 (default), float16 or bfloat16 (autocast)")
    parser.add_argument("--checkpoint-dir", type=Path, help="where downloaded checkpoints are cached")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA only: replay each sampling step from a CUDA graph (captured once per shape)")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the PNGs (default outputs/)")


def _sampling_options(parser) -> None:
    parser.add_argument("--seed", type=int, help="seed of the first image; image i uses seed+i (default 0)")
    parser.add_argument("--batch-size", type=int, help="images per prompt when one prompt is given")
    parser.add_argument("--sampler", help="step rule (see `glide samplers`; default: the model's)")
    parser.add_argument("--steps", type=_steps, help="base sampling steps or a spec like fast27")
    parser.add_argument("--guidance", help="guidance strategy (see `glide samplers`; default classifier-free)")
    parser.add_argument("--guidance-scale", type=float, help="the strategy's guidance scale (default 3)")
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="NAME=VALUE",
                        help="a step rule or guidance parameter (repeatable; see `glide samplers`)")
    parser.add_argument("--negative-prompt", help="what classifier-free guidance steers away from")
    parser.add_argument("--upsample", action=argparse.BooleanOptionalAction,
                        help="run the upsampler (default); --no-upsample keeps the base model's images")
    parser.add_argument("--upsample-sampler", help="the upsampler's step rule (default: the model's)")
    parser.add_argument("--upsample-steps", type=_steps, help="upsampler steps (default: the model's)")
    parser.add_argument("--upsample-temp", type=float, help="upsampler noise temperature (default 0.997)")
    parser.add_argument("--from-png", type=Path, metavar="FILE",
                        help="start from the settings embedded in a PNG glide wrote; flags override them")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glide", description="GLIDE text-to-image diffusion from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="text to image")
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="one image per prompt (or --batch-size per one)")
    _model_options(p)
    _sampling_options(p)
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("inpaint", help="replace the masked region of an image to match a prompt")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("mask", type=Path, metavar="MASK", help="white = the region to replace")
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="(optional with --from-png)")
    _model_options(p)
    _sampling_options(p)
    p.set_defaults(run=cmd_inpaint)

    p = sub.add_parser("upsample", help="super-resolve images with the model's upsampler (4x for GLIDE)")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="any size: centre-cropped, resized to "
                                                                        "the base size first")
    p.add_argument("--prompt", required=True, help="what the images show (one for all)")
    _model_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed+i (default 0)")
    p.add_argument("--sampler", help="step rule (default: the model's upsampler rule)")
    p.add_argument("--steps", type=_steps, help="steps or a spec like fast27 (default: the model's)")
    p.add_argument("--upsample-temp", type=float, default=0.997, help="noise temperature (default 0.997)")
    p.set_defaults(run=cmd_upsample)

    p = sub.add_parser("compare", help="one prompt and seed under several guidance strategies, as one grid PNG")
    p.add_argument("prompt", metavar="PROMPT")
    _model_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", help="step rule (default: the model's)")
    p.add_argument("--steps", type=_steps, help="base sampling steps (default: the model's)")
    p.add_argument("--strategies", type=_names, help="comma-separated (default clip,classifier-free,none)")
    p.add_argument("--scales", type=_scales, help="guidance scales to sweep, e.g. 1,3,6: one grid column each")
    p.add_argument("--guidance-scale", type=float, help="the one scale to use without --scales (default 3)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("download", help="fetch a model family's checkpoints into the cache")
    p.add_argument("--model", default="glide-filtered", help="family to fetch (default glide-filtered)")
    p.add_argument("--checkpoint-dir", type=Path, help="cache folder (default $GLIDE_CACHE_DIR or ~/.cache/glide)")
    p.set_defaults(run=cmd_download)

    p = sub.add_parser("models", help="the model families and whether they are ready locally")
    p.add_argument("--checkpoint-dir", type=Path, help="cache folder to look in")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("samplers", help="step rules and guidance strategies, with their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_samplers)
    return parser


def _is_expected(exc: Exception) -> bool:
    """Whether a user can cause and fix `exc`: reported in one line, without a traceback.

    UsageError, InputError and SamplerError are ValueErrors, as is an unknown model name;
    FileNotFoundError and PIL's UnidentifiedImageError are OSErrors. Those are checked first so
    that reporting them does not import torch (via glide.download) when the command had not.
    """
    if isinstance(exc, (ValueError, OSError)):
        return True
    from .download import CheckpointError, DownloadError
    from .model_registry import ModelNotAvailable

    return isinstance(exc, (DownloadError, CheckpointError, ModelNotAvailable))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`glide models | head`): not worth a message. Point stdout at devnull
        # so that flushing it at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not _is_expected(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
