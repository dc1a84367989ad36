"""The `glide` command line (also `python -m glide`): generate, inpaint, compare, download, models, samplers.

    glide generate "a small red circle on the left on a blue background" --seed 3 --steps 25
    glide generate --from-png outputs/000-seed3.png --guidance-scale 5
    glide generate "a large yellow square at the top on a black background" --init-image sketch.png --strength 0.6
    glide inpaint photo.png mask.png "a small blue square on the right on a white background" --strength 0.7
    glide compare "a big green triangle on the left on a white background" --scales 1,3,6
    glide download --model glide-filtered
    glide models
    glide samplers --json
    glide serve --ray-address auto --replicas 4 --gpus-per-replica 1     # Ray Serve, no UI (see glide.serving.ray_serve)

Every PNG written carries the settings that made it, so `--from-png` regenerates it (flags given on
the command line override the stored settings). Expected failures — a bad prompt, image, mask or
sampler parameter, a missing or undownloadable model — print `error: <message>` and exit with 2.

The torch-based modules are imported inside the commands so that `glide --help` answers at once.
"""
import argparse
import json
import os
import re
import sys
import threading
import traceback
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .declarations import COMPARE_SEEDS, DEFAULT_GUIDANCE, Setting, for_mode
from .errors import ServerError, UsageError, UserError
from .fileio import human_bytes
from .serving import options as serving
from .serving import settings_file

EXIT_ERROR = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

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


def _load_pipeline(args, model: str):
    from .pipeline import load_pipeline

    return load_pipeline(model, args.device, args.dtype, args.checkpoint_dir, cuda_graphs=args.cuda_graphs)


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


def _flags(args, mode: str) -> Dict:
    """The settings of `mode` given on the command line (a flag left out is not given: None)."""
    given = {s.name: getattr(args, s.name) for s in for_mode(mode) if getattr(args, s.name, None) is not None}
    if "plugin_params" in given:   # --param NAME=VALUE, repeated
        given["plugin_params"] = dict(given["plugin_params"])
    return given


def _warn_about_prompts(prompts: List[str], model: Optional[str]) -> None:
    """A prompt the model cannot draw (outside the shapes family's grammar) is said on stderr, as the demo says it."""
    from .declarations import DEFAULT_MODEL
    from .families import get_family

    family = get_family(model or DEFAULT_MODEL)
    for prompt in dict.fromkeys(prompts or ()):
        warning = family.prompt_warning(prompt)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)


def _settings(args, mode: str, prompts: List[str]):
    """GenerationSettings from the flags, on top of the --from-png settings when given; a flag left out
    keeps the PNG's value, or else takes the model's default (all defaults and checks are the settings')."""
    from samplers import get_registry

    from .settings import GenerationSettings, ignored_negative_prompt

    saved = _saved_settings(args, mode)
    flags = _flags(args, mode)
    _warn_about_prompts(prompts, flags.get("model") or saved.get("model"))
    ignored = ignored_negative_prompt(flags.get("negative_prompt"), flags.get("guidance", saved.get("guidance")))
    if ignored:
        print(f"warning: {ignored}", file=sys.stderr)
    if args.guidance_scale is not None:  # a flag that would silently do nothing is a mistake worth saying
        strategy = get_registry().guidance_strategy(flags.get("guidance", saved.get("guidance", DEFAULT_GUIDANCE)))
        if getattr(strategy, "scale", None) is None:
            raise UsageError(f"--guidance-scale: the guidance strategy {strategy.name!r} has no scale")
    if saved:
        return GenerationSettings.from_png(saved, prompts or None, **flags)
    if not prompts:
        raise UsageError("give a prompt, or --from-png FILE to reuse the prompt stored in a PNG")
    return GenerationSettings.create(prompts, mode=mode, **flags)


def _write_images(result, out_dir: Path) -> List[Path]:
    return [_save_new(image, out_dir, f"seed{settings['seed']}", settings)
            for image, settings in zip(result.images, result.settings)]


def _save_new(image, out_dir: Path, suffix: str, settings: Dict) -> Path:
    """`image` with its settings as a new `NNN-<suffix>.png` in `out_dir` (see _reserve_path)."""
    from .pngmeta import save_png

    try:
        path = _reserve_path(out_dir, suffix)
    except OSError as exc:
        raise UsageError(f"cannot write to the output folder {out_dir}: {exc}") from None
    try:
        return save_png(image, path, settings)
    except BaseException as exc:  # Ctrl-C or a full disk: no empty placeholder is left behind
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc}") from None
        raise


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *rows])


# ------------------------------------------------------------------------------------------ commands
def _run_job(args, payload):
    """One job on the chosen backend, with a progress bar: this process's pipeline (default), or the Ray Serve
    application at --ray-address. The same job, the same images, whichever runs it. Then where and in what
    precision the images were computed, on stderr (their PNGs record it too)."""
    from .serving.backend import BackendOptions, create_backend
    from .serving.jobs import Job

    if args.backend == "ray" and not args.ray_address:
        raise UsageError("--backend ray sends the job to a running application: give --ray-address (the "
                         "cluster where `glide serve` deployed it)")
    backend = create_backend(BackendOptions(
        kind=args.backend, device=args.device, dtype=args.dtype, checkpoint_dir=args.checkpoint_dir,
        cuda_graphs=args.cuda_graphs, max_batch=max(1, len(payload.prompts)), ray_address=args.ray_address))
    try:
        job = backend.submit(Job(payload))
        with _Progress() as progress:
            for event in job.stream():
                if event is not None:
                    progress(event.stage, event.step, event.total, None)
        outcome = job.outcome()
    finally:
        backend.close()
    if args.backend != "ray":
        pipe = _load_pipeline(args, payload.model)   # loaded by the job: this only looks it up
        print(f"computed on {pipe.device} in {pipe.precision.describe()}", file=sys.stderr)
    return outcome


def cmd_generate(args) -> int:
    from .serving.jobs import Generate

    if args.init_image is not None:   # opened once, before any model loads: its digest and its pixels
        args.init_image = _open_image(args.init_image, "--init-image")
    settings = _settings(args, "generate", args.prompts)
    result = _run_job(args, Generate(settings, args.init_image))
    for path in _write_images(result, args.out):
        print(path)
    return 0


def cmd_inpaint(args) -> int:
    from .images import EditWindow
    from .serving.jobs import Inpaint

    image = _open_image(args.image, "image")
    mask = _open_image(args.mask, "mask")
    EditWindow.of(image, mask)   # an empty mask is said before any model loads
    settings = _settings(args, "inpaint", [args.prompt] if args.prompt else [])
    result = _run_job(args, Inpaint(settings, image, mask))
    for path in _write_images(result, args.out):
        print(path)
    return 0


def cmd_upsample(args) -> int:
    from .settings import GenerationSettings

    images = [_open_image(path, "image") for path in args.images]
    settings = GenerationSettings.create([args.prompt] * len(images), mode="upsample", **_flags(args, "upsample"))
    pipe = _load_pipeline(args, settings.model)
    with _Progress() as progress:
        result = pipe.upsample(images, settings, callback=progress)
    for path in _write_images(result, args.out):
        print(path)
    return 0


def cmd_compare(args) -> int:
    from . import comparison
    from .serving.jobs import Compare
    from .settings import COMPARE_STRATEGIES, ComparisonSettings

    _warn_about_prompts([args.prompt], args.model)
    # --guidance-scale is every strategy's scale; --clip-scale and --cfg-scale each override it for their own.
    scales = {name: args.guidance_scale for name in args.strategies or COMPARE_STRATEGIES}
    scales.update({name: value for name, value in (("clip", args.clip_scale), ("classifier-free", args.cfg_scale))
                   if value is not None})
    compared = ComparisonSettings.create(args.prompt, **_flags(args, "compare"), seeds=args.seeds,
                                         strategies=args.strategies or None, scales=scales, sweep=args.scales or ())
    made = _run_job(args, Compare(compared))
    rows = comparison.rows(made.entries)
    heading = (f"{compared.prompt}  |  {compared.base.model}, {compared.base.sampler} {compared.base.steps} steps, "
               f"the same {len(compared.seeds)} seeds in every row")
    settings = {**compared.describe(), "results": [row.as_dict() for row in rows]}
    path = _save_new(comparison.grid(rows, heading), args.out, f"compare-seed{compared.seed}", settings)
    print(_table(("strategy", "scale", "fidelity", "spread", "seconds", ""), comparison.table(rows)))
    summary = comparison.verdict(rows)
    if summary:
        print(summary)
    print(path)
    return 0


def cmd_download(args) -> int:
    from .families import download_family

    for path in download_family(args.model, args.checkpoint_dir, progress=sys.stderr.isatty()):
        print(path)
    return 0


def cmd_models(args) -> int:
    from .families import list_models

    models = list_models(args.checkpoint_dir)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = []
    for m in models:
        ready = sum(c["ready"] for c in m["components"].values())
        rows.append((m["name"], f"{'yes' if m['ready'] else 'no'} ({ready}/{len(m['components'])})",
                     human_bytes(m["bytes"]), m["license"], m["description"]))
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
                bounds += f", one of {'|'.join(q['choices'])}" if q["choices"] else ""
                print(f"  {' ' * width}  --param {q['name']}=  {q['type']}, default {q['default']}{bounds}"
                      + (f"  ({q['help']})" if q["help"] else ""))
    return 0


def cmd_serve(args) -> int:
    """Deploy or update the Ray Serve application, or show its status; on a local Ray, serve until Ctrl-C."""
    try:
        from .serving import ray_serve
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise UsageError("`glide serve` runs on Ray Serve, which is not installed: pip install 'glide[ray]'") from exc

    config = serving.config_of(args, args.max_batch, args.dtype, args.checkpoint_dir)
    owned = ray_serve.connect(args.ray_address, args.ray_cpus)
    try:
        if args.status:
            print(json.dumps(ray_serve.status(), indent=2, default=str))
            return 0
        ray_serve.deploy(config)
        print(json.dumps(ray_serve.status(), indent=2, default=str))
        if not owned:
            print(f"deployed on the cluster at {args.ray_address}; `app.py --backend ray --ray-address "
                  f"{args.ray_address}` puts the UI in front", file=sys.stderr)
            return 0
        print("serving on a local Ray until Ctrl-C (start a cluster with `ray start --head` to keep it running "
              "without this process)", file=sys.stderr)
        threading.Event().wait()
        return 0
    finally:
        if owned:
            ray_serve.shutdown()


# ------------------------------------------------------------------------------------------ parser
# Also app.py's. "auto" is resolved by glide.precision, which validates the names too.
DEVICE_HELP = "torch device: auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps"
DTYPE_HELP = ("auto (default): the fastest precision this machine runs well (bfloat16 on a CPU with bf16 units, "
              "float16 on a GPU); or float32, bfloat16, float16; or int8 (CPU only, the int8 extra: the U-Nets "
              "quantized through OpenVINO, built and cached on first use)")


def _model_options(parser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    parser.add_argument("--checkpoint-dir", type=Path, help="where downloaded checkpoints are cached")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA only: replay each sampling step from a CUDA graph (captured once per shape)")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the PNGs (default outputs/)")


def _backend_options(parser) -> None:
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: sample in this process (default); ray: on the Ray Serve application")
    parser.add_argument("--ray-address", metavar="ADDRESS", help="with --backend ray: the cluster ('auto', "
                                                                 "ray://host:10001) where `glide serve` deployed")


def _setting_option(parser, setting: Setting, *aliases: str) -> None:
    """A setting's flag (glide.declarations): its help, bounds and default said once there."""
    kinds = {"int": dict(type=int, metavar="N"), "float": dict(type=float, metavar="X"),
             "steps": dict(type=_steps, metavar="STEPS"), "bool": dict(action=argparse.BooleanOptionalAction),
             "params": dict(type=_param, action="append", metavar="NAME=VALUE"),
             "image": dict(type=Path, metavar="FILE")}
    parser.add_argument(setting.flag, *aliases, dest=setting.name, help=setting.describe(),
                        **kinds.get(setting.kind, {}))


def _sampling_options(parser, mode: str) -> None:
    """Every setting `mode` takes, as a flag (`glide upsample` also takes them without their upsample_ prefix:
    every setting there is the upsampler's)."""
    for setting in for_mode(mode):
        short = setting.flag.replace("--upsample-", "--", 1)
        _setting_option(parser, setting, *([short] if mode == "upsample" and short != setting.flag else []))


def _from_png_option(parser) -> None:
    parser.add_argument("--from-png", type=Path, metavar="FILE",
                        help="start from the settings embedded in a PNG glide wrote; flags override them")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glide", description="GLIDE text-to-image diffusion from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="text to image")
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="one image per prompt (or --batch-size per one)")
    _model_options(p)
    _backend_options(p)
    _sampling_options(p, "generate")
    _from_png_option(p)
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("inpaint", help="replace the masked region of an image to match a prompt")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("mask", type=Path, metavar="MASK", help="white = the region to replace; any size (resized to the image)")
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="(optional with --from-png)")
    _model_options(p)
    _backend_options(p)
    _sampling_options(p, "inpaint")
    _from_png_option(p)
    p.set_defaults(run=cmd_inpaint)

    p = sub.add_parser("upsample", help="super-resolve images with the model's upsampler (4x for GLIDE)")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="any size: centre-cropped, resized to "
                                                                        "the base size first")
    p.add_argument("--prompt", required=True, help="what the images show (one for all)")
    _model_options(p)
    _sampling_options(p, "upsample")
    p.set_defaults(run=cmd_upsample)

    p = sub.add_parser("compare", help="one prompt under several guidance strategies over the same seeds: a row "
                                       "per strategy with its fidelity and spread of layouts, as one grid PNG")
    p.add_argument("prompt", metavar="PROMPT")
    _model_options(p)
    _backend_options(p)
    _sampling_options(p, "compare")
    p.add_argument("--strategies", type=_names, help="comma-separated (default clip,classifier-free,none)")
    p.add_argument("--seeds", type=int, metavar="N", help=f"how many seeds every strategy runs over, from --seed "
                                                         f"on: one grid column each (default {COMPARE_SEEDS})")
    p.add_argument("--clip-scale", type=float, help="CLIP guidance's scale (default: --guidance-scale, else 3)")
    p.add_argument("--cfg-scale", type=float, help="classifier-free guidance's scale (default: --guidance-scale, "
                                                   "else 3)")
    p.add_argument("--guidance-scale", type=float, help="every strategy's scale where --clip-scale or --cfg-scale "
                                                        "does not say (default: each strategy's own, 3 for both)")
    p.add_argument("--scales", type=_scales, help="guidance scales to sweep, e.g. 1,3,6: a grid row each (beside the "
                                                  "strategy's own scale) for every strategy with a scale")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("download", help="fetch a model family's checkpoints into the cache")
    p.add_argument("--model", default="glide-filtered", help="family to fetch (default glide-filtered)")
    p.add_argument("--checkpoint-dir", type=Path, help="cache folder (default $GLIDE_CACHE_DIR or ~/.cache/glide)")
    p.set_defaults(run=cmd_download)

    p = sub.add_parser("models", help="the model families and whether they are ready locally")
    p.add_argument("--checkpoint-dir", type=Path, help="cache folder to look in")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("serve", help="deploy or update the Ray Serve application (no UI), or show its --status")
    serving.add_options(p)
    p.add_argument("--status", action="store_true", help="show the application's replicas, devices and queues")
    p.add_argument("--max-batch", type=int, default=8, help="images per batched run (default 8)")
    p.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    p.add_argument("--checkpoint-dir", type=Path, help="where downloaded checkpoints are cached, on every machine")
    settings_file.add_option(p)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("samplers", help="step rules and guidance strategies, with their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_samplers)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, with `glide serve --config FILE`'s settings as the defaults its flags override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["serve"]:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        settings_file.apply(commands.choices["serve"], argv[1:])
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
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
    except (UserError, ServerError) as exc:   # both say in words what to do
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # a bug, not the user's doing: the traceback is what a report needs
        traceback.print_exc()
        print("error: internal error (traceback above); please report it", file=sys.stderr)
        return EXIT_INTERNAL
