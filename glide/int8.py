"""dtype="int8": a family's U-Nets run W8A8 (8-bit weights and activations) through OpenVINO on a CPU.

On a CPU with VNNI (avx512_vnni, avx_vnni, AMX) an 8-bit multiply-add costs half a bf16 one, and
OpenVINO runs NNCF's quantized graphs on those instructions. What runs in int8 is each diffusion U-Net
(base, upsample, base-inpaint, upsample-inpaint); the text encoder (once per run), the noised CLIP and
the samplers stay in torch float32. On first use of a component, once per checkpoint and versions:

1. **convert**: the float32 U-Net is exported (`torch.export`, decomposed) and converted
   (`openvino.convert_model`) with the text embeddings as inputs, twice: the full forward, which also
   returns DeepCache's feature at the default branch, and DeepCache's shallow path on that feature
   (`glide.deep_cache`), so the `fast` preset's DeepCache steps run in int8 too;
2. **calibrate**: the family's own sampling trajectories, the `fast` preset and the family's defaults,
   classifier-free guided, are sampled in float32 over the calibration captions (`CALIBRATION`), and
   every input the U-Net sees is recorded; an even spread of them (one image each) is the calibration set;
3. **quantize**: NNCF's post-training quantization (`nncf.quantize`, transformer model type, SmoothQuant
   before the convolutions too, min-max activation ranges, the end convolutions and the matmuls kept in
   float32: `quantize` says why) on that set;
4. **cache**: both models are written under the checkpoint cache (`cache_dir`), in a folder named after
   a key of the checkpoint's SHA-256, the openvino/nncf/torch versions and `CONVERSION_VERSION`, with a
   manifest holding each file's SHA-256; the folder appears whole (written beside it, then renamed) and
   a folder whose files do not match their manifest is built again, never loaded. The first load on a
   machine also keeps each model compiled for its CPU there (`compiled_model`), for the loads after it.

`openvino_unet(...)` returns an `OpenVINOUNet`, the drop-in for the torch U-Net that
`glide.pipeline.Pipeline` samples with when its dtype is "int8".
"""
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from .deep_cache import DeepCacheStep, default_depth
from .download import _sha256_of, default_cache_dir
from .errors import UserError
from .fileio import atomic_write, write_text_atomic

# Bump when what is built changes (the export, the calibration runs, the quantization settings), so that
# every cached model is built again: the version is part of the cache key.
CONVERSION_VERSION = 2
# OpenVINO's precision for the operations NNCF leaves unquantized (norms, softmax, the timestep embedding).
# Its bf16 hint computes the norms in bf16 too, 7% off float32 on GLIDE's base where torch's bf16 layout is
# 1.2% off (measured with random weights): float32 keeps the unquantized part exact.
UNQUANTIZED_PRECISION = "f32"
INSTALL_HINT = "dtype int8 needs OpenVINO and NNCF: pip install 'glide[int8]' (or: pip install openvino nncf)"


def _backends():
    """(openvino, nncf), imported on first use: the core install does without them."""
    try:
        import nncf
        import openvino
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} ({exc})") from None
    return openvino, nncf


# ---------------------------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class CalibrationPlan:
    """What a family's U-Nets are calibrated on: the `fast` preset's trajectories for every caption, the
    family's default settings' for the first `with_defaults` of them (0: none), and `items` single-image U-Net
    inputs drawn evenly from everything recorded."""

    captions: Tuple[str, ...]
    with_defaults: int
    items: int
    seed: int = 20260


def _shapes_captions(n: int) -> Tuple[str, ...]:
    from .data import shapes

    rng = np.random.default_rng([20260, 34])   # a stream no training batch nor evaluation uses
    return tuple(shapes.caption(shapes.random_scene(rng, 1 + i % 2), rng) for i in range(n))


# Per family: the shapes models are small enough for many runs; GLIDE's full-size float32 runs take seconds
# a step on a CPU, so fewer captions and one run at the defaults (DDIM 100, the upsampler's fast27).
GLIDE_CAPTIONS = ("an oil painting of a corgi", "a photo of a red sports car on a mountain road",
                  "a watercolor painting of a lighthouse at sunset", "a bowl of fruit on a wooden table",
                  "a cat sitting on a windowsill", "a city street at night in the rain",
                  "a pencil sketch of an old man's face", "a green field under a blue sky with white clouds")
CALIBRATION: Dict[str, Callable[[], CalibrationPlan]] = {
    "shapes": lambda: CalibrationPlan(_shapes_captions(16), with_defaults=8, items=128),
    "glide-filtered": lambda: CalibrationPlan(GLIDE_CAPTIONS, with_defaults=1, items=64),
}


def calibration_plan(family_name: str) -> CalibrationPlan:
    plan = CALIBRATION.get(family_name)
    if plan is None:
        raise UserError(f"dtype int8 has no calibration captions for the {family_name} family; "
                        f"it supports {', '.join(CALIBRATION)}")
    return plan()


class _Recorder:
    """The U-Net as a calibration run calls it: each call's inputs are recorded, one entry per image."""

    def __init__(self, model, names: Sequence[str]):
        self.model = model
        self.names = names
        self.items: List[Dict[str, np.ndarray]] = []

    def __getattr__(self, name):
        return getattr(self.__dict__["model"], name)

    def __call__(self, x, timesteps, **kwargs):
        inputs = _inputs_of(self.names, x, timesteps, kwargs)
        self.items += [{name: value[i:i + 1] for name, value in inputs.items()} for i in range(x.shape[0])]
        return self.model(x, timesteps, **kwargs)


def _halves(size: int):
    """Four inpainting masks (white = edit): each half of the image."""
    from PIL import Image

    boxes = [(0, 0, size // 2, size), (size // 2, 0, size, size), (0, 0, size, size // 2), (0, size // 2, size, size)]
    masks = []
    for box in boxes:
        mask = Image.new("L", (size, size), 0)
        mask.paste(255, box)
        masks.append(mask)
    return masks


def calibration_items(pipe, component: str, model, diffusion, plan: CalibrationPlan, names: Sequence[str],
                      progress: tqdm) -> List[Dict[str, np.ndarray]]:
    """The inputs `model` (the float32 U-Net of `component`) sees on `pipe`'s trajectories of `plan`.

    `pipe` is a float32 pipeline of the family; the component's model is replaced there by a recorder.
    Inpainting runs take the `fast` preset's base images of the captions as inputs, each with a half
    masked and another caption asked for; the upsampler's default runs upsample those same base images.
    """
    recorder = _Recorder(model, names)
    pipe._components[component] = (recorder, diffusion)   # the float32 model already loaded, recording
    captions, seed = list(plan.captions), plan.seed
    defaults = captions[:plan.with_defaults]
    upsample = component.startswith("upsample")
    if component.endswith("inpaint"):
        sources = pipe.generate(captions, preset="fast", upsample=False, seed=seed).base_images
        masks = _halves(pipe.family.base_size)
        for i, source in enumerate(sources):
            other = captions[(i + 1) % len(captions)]
            pipe.inpaint(source, masks[i % len(masks)], [other], preset="fast", upsample=upsample, seed=seed + i)
            if i < plan.with_defaults:
                pipe.inpaint(source, masks[i % len(masks)], [other], upsample=upsample, seed=seed + i)
            progress.update(1)
    elif upsample:
        bases = pipe.generate(captions, preset="fast", upsample=False, seed=seed).base_images
        fast = pipe.settings(captions, preset="fast")
        pipe.upsample(bases, captions, sampler=fast.upsample_sampler, steps=fast.upsample_steps,
                      deep_cache=fast.upsample_deep_cache, seed=seed)
        progress.update(1)
        if defaults:
            pipe.upsample(bases[:len(defaults)], defaults, seed=seed)
        progress.update(1)
    else:
        pipe.generate(captions, preset="fast", upsample=False, seed=seed)
        progress.update(1)
        if defaults:
            pipe.generate(defaults, upsample=False, seed=seed)
        progress.update(1)
    recorded = recorder.items
    keep = np.unique(np.linspace(0, len(recorded) - 1, min(plan.items, len(recorded))).round().astype(int))
    return [recorded[i] for i in keep]


def _calibration_runs(component: str, plan: CalibrationPlan) -> int:
    return len(plan.captions) if component.endswith("inpaint") else 2


# ---------------------------------------------------------------------------------------------- conversion
def input_names(component: str) -> List[str]:
    """The converted U-Net's inputs, in order: the image and timesteps, the text embeddings, then what the
    component's kind concatenates to the image (the low-resolution image; the inpainting image and mask)."""
    names = ["x", "timesteps", "xf_proj", "xf_out"]
    if component.startswith("upsample"):
        names.append("low_res")
    if component.endswith("inpaint"):
        names += ["inpaint_image", "inpaint_mask"]
    return names


def _inputs_of(names: Sequence[str], x, timesteps, kwargs) -> Dict[str, np.ndarray]:
    """A sampling call's tensors as the converted model's float32 inputs, by name."""
    text = kwargs.get("text_emb")
    if text is None:
        raise ValueError("the int8 U-Net takes the text as text_emb (model.encode_text), not tokens")
    given = {"x": x, "timesteps": timesteps, "xf_proj": text["xf_proj"], "xf_out": text["xf_out"],
             **{name: kwargs.get(name) for name in names[4:]}}
    missing = [name for name in names if given[name] is None]
    if missing:
        raise ValueError(f"this U-Net needs {', '.join(missing)}")
    return {name: np.ascontiguousarray(given[name].detach().to("cpu", torch.float32).numpy()) for name in names}


class _Exported(torch.nn.Module):
    """The U-Net with plain tensor inputs, as `torch.export` takes it: the full forward returning the output and
    DeepCache's feature at `depth`, or (`shallow`) the shallow path given that feature as its last input."""

    def __init__(self, unet, names: Sequence[str], depth: int, shallow: bool):
        super().__init__()
        self.unet, self.names, self.depth, self.shallow = unet, list(names), depth, shallow

    def forward(self, *args):
        inputs = dict(zip(self.names, args))
        step = DeepCacheStep(self.depth, args[-1] if self.shallow else None)
        extras = {name: inputs[name] for name in self.names[4:] if name != "feature"}
        out = self.unet(inputs["x"], inputs["timesteps"], deep_cache=step,
                        text_emb={"xf_proj": inputs["xf_proj"], "xf_out": inputs["xf_out"]}, **extras)
        return out if self.shallow else (out, step.feature)


def convert(model, names: Sequence[str], example: Dict[str, np.ndarray], depth: int, shallow: bool):
    """The OpenVINO model of the U-Net's full forward (outputs: the prediction, DeepCache's feature) or of its
    shallow path (`example` then has the feature as "feature"); batch dynamic, everything else as in `example`."""
    ov, _ = _backends()
    names = list(names) + (["feature"] if shallow else [])
    args = tuple(torch.from_numpy(np.repeat(example[name], 2, axis=0)) for name in names)
    batch = torch.export.Dim("batch", min=1, max=1024)
    module = _Exported(model, names, depth, shallow).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch's deprecations inside export and conversion
        program = torch.export.export(module, args, dynamic_shapes=(({0: batch},) * len(args),)).run_decompositions()
        converted = ov.convert_model(program)
    # Everything but the batch static, as the sampling runs call it: OpenVINO plans fixed-size kernels then.
    converted.reshape({port: ov.PartialShape([-1, *example[name].shape[1:]])
                       for port, name in zip(converted.inputs, names)})
    return converted


def quantize(converted, items: List[Dict[str, np.ndarray]], names: Sequence[str]):
    """NNCF's W8A8 post-training quantization of `converted` on the calibration `items`.

    Beyond NNCF's transformer defaults, three choices measured on the shapes family's upsampler (true 128 px
    renders, 64 scenes, DDIM 8 and the `fast` preset's DDIM 4 with DeepCache 2; mean absolute error against the
    truth; bf16 4.83 and 5.24 levels): NNCF's defaults were 1.2 and 1.8 levels worse than bf16, these
    together 0.20 and 0.30 (keeping one convolution at each end instead of two: 0.30 and 0.51). SmoothQuant
    also before the convolutions (alpha 0.7) moves their activations' outliers into the weights; the
    activations' ranges are their min and max over the calibration set (a diffusion U-Net's rare large
    activations carry the image); the first two and last two convolutions (the image in and the prediction
    out) and the matmuls (the timestep embedding's linears and attention's products: little of the work)
    stay in float32.
    """
    _, nncf = _backends()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    convolutions = [op.get_friendly_name() for op in converted.get_ordered_ops() if op.get_type_name() == "Convolution"]
    dataset = nncf.Dataset(items, lambda item: [item[name] for name in names])
    with _quiet("nncf"):   # it logs a line per operation left in float32: the progress bar says what happens
        return nncf.quantize(
            converted, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items),
            fast_bias_correction=True,
            ignored_scope=nncf.IgnoredScope(names=convolutions[:2] + convolutions[-2:], types=["MatMul"],
                                            validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.95, convolution=0.7),
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX))


@contextlib.contextmanager
def _quiet(logger_name: str):
    """The named logger at warnings and above for the duration."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _features(model, items, names, depth: int) -> List[Dict[str, np.ndarray]]:
    """The calibration items of the shallow path: each item with DeepCache's feature the full forward
    computes for it (in sampling it comes from a step or two earlier, close to this one)."""
    out = []
    for item in items:
        tensors = {name: torch.from_numpy(item[name]) for name in names}
        step = DeepCacheStep(depth)
        with torch.no_grad():
            model(tensors["x"], tensors["timesteps"], deep_cache=step,
                  text_emb={"xf_proj": tensors["xf_proj"], "xf_out": tensors["xf_out"]},
                  **{name: tensors[name] for name in names[4:]})
        out.append({**item, "feature": step.feature.float().numpy()})
    return out


# ---------------------------------------------------------------------------------------------- the cache
MODEL_FILES = ("full.xml", "full.bin", "shallow.xml", "shallow.bin")
MANIFEST = "manifest.json"


def cache_dir(checkpoint_dir: Optional[Path] = None) -> Path:
    """Where converted models are kept: `openvino/` in the checkpoint cache (the checkpoint folder given, else
    `glide.download.default_cache_dir()`)."""
    return Path(checkpoint_dir or default_cache_dir()) / "openvino"


def sha256_remembered(paths: Sequence[Path], memo: Path) -> List[str]:
    """The SHA-256 of each file, remembered in `memo` per (path, size, modification time): GLIDE's checkpoints
    are 1.5 GB and its compiled U-Nets 400 MB, and loading should not pay the hashing every time. A file cut
    short or written to since has another size or time, so it is hashed again."""
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    digests, changed = [], False
    for path in paths:
        stat = Path(path).stat()
        key = f"{Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}"
        if key not in known:
            known[key], changed = _sha256_of(Path(path)), True
        digests.append(known[key])
    if changed:
        # Only files still there (at any size and time) are remembered: rebuilt entries do not pile up.
        known = {key: digest for key, digest in known.items() if Path(key.rsplit(" ", 2)[0]).exists()}
        with contextlib.suppress(OSError):   # a read-only cache costs the hashing again next time, nothing more
            write_text_atomic(memo, json.dumps(known, indent=1))
    return digests


def versions() -> Dict[str, str]:
    ov, nncf = _backends()
    return {"openvino": ov.__version__, "nncf": nncf.__version__, "torch": torch.__version__,
            "conversion": str(CONVERSION_VERSION)}


def entry_key(checkpoints: Sequence[str], depth: int, plan: CalibrationPlan) -> Dict:
    """Everything a converted model depends on: a change to any of it is another cache entry."""
    return {"checkpoint_sha256": list(checkpoints), "versions": versions(), "deep_cache_depth": depth,
            "calibration": {"captions": list(plan.captions), "with_defaults": plan.with_defaults,
                            "items": plan.items, "seed": plan.seed}}


def _entry(root: Path, family: str, component: str, key: Dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return root / family / f"{component}-{digest}"


def _memo(entry: Path) -> Path:
    """The file of remembered SHA-256s, at the root of the cache `entry` is in."""
    return entry.parent.parent / "sha256.json"


def read_entry(entry: Path, key: Dict) -> Optional[str]:
    """Why the cache entry cannot be used (None: it can): absent, its manifest not for `key`, or a file that
    does not match its manifest (cut short, altered)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return "its manifest is for other checkpoints or versions"
    for name in MODEL_FILES:
        path = entry / name
        if not path.is_file() or sha256_remembered([path], _memo(entry))[0] != manifest.get("sha256", {}).get(name):
            return f"{name} does not match its manifest"
    return None


def _write_entry(entry: Path, models: Dict[str, object], key: Dict, seconds: float):
    """Save the models and their manifest beside `entry`, then rename the folder into place (atomic: readers
    see no entry or a whole one). Older entries of the same component (other checkpoints, versions) go."""
    ov, _ = _backends()
    entry.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        for name, model in models.items():
            ov.save_model(model, str(building / f"{name}.xml"), compress_to_fp16=False)
        manifest = {"key": key, "sha256": {name: _sha256_of(building / name) for name in MODEL_FILES},
                    "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(seconds, 1)}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.chmod(building, 0o755)
        shutil.rmtree(entry, ignore_errors=True)   # a corrupt or incomplete entry of the same key
        os.replace(building, entry)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    component = entry.name.rsplit("-", 1)[0]
    for old in entry.parent.glob(f"{component}-*"):
        if old != entry and old.is_dir() and old.name.rsplit("-", 1)[0] == component:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- compiling
def _compile_settings(unquantized: str) -> Dict:
    """One stream, torch's thread count, `unquantized` ("f32" or "bf16") the precision of what is not quantized."""
    return {"INFERENCE_PRECISION_HINT": unquantized, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(), "NUM_STREAMS": 1}


def compile_for_cpu(model_or_path, unquantized: str = UNQUANTIZED_PRECISION):
    """An OpenVINO model (or its .xml) compiled for this CPU (`_compile_settings`)."""
    return _core().compile_model(model_or_path, "CPU", _compile_settings(unquantized))


_CORE = None


def _core():
    global _CORE
    if _CORE is None:
        ov, _ = _backends()
        _CORE = ov.Core()
    return _CORE


def compiled_model(entry: Path, which: str):
    """The cache `entry`'s `which` model ("full", "shallow") compiled for this CPU, and how it was had.

    Compiling a full-size U-Net takes OpenVINO seconds (its graph transformations); reading back a compiled
    copy, about a third of that. So the first load on a machine compiles from the .xml and keeps the compiled
    copy in the entry (when the cache is writable), named after what it depends on (OpenVINO's version, the
    CPU and its flags, the compile settings), with its SHA-256 beside it; a later load reads the copy when it
    matches that SHA-256, and compiles again otherwise (a copy cut short or altered is never read).
    """
    from .precision import cpu_flags, cpu_model

    ov, _ = _backends()
    settings = _compile_settings(UNQUANTIZED_PRECISION)
    made_for = {"openvino": ov.__version__, "cpu": cpu_model(), "flags": sorted(cpu_flags()), "settings": settings}
    copy = entry / f"{which}-{hashlib.sha256(json.dumps(made_for, sort_keys=True).encode()).hexdigest()[:16]}.compiled"
    digest = copy.with_name(copy.name + ".sha256")
    # RuntimeError: OpenVINO refused a copy that is whole (made by another build of it): compiled again.
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        if sha256_remembered([copy], _memo(entry))[0] == digest.read_text().strip():
            return _core().import_model(copy.read_bytes(), "CPU", settings), "read its compiled copy"
    compiled = compile_for_cpu(str(entry / f"{which}.xml"))
    stream = io.BytesIO()
    compiled.export_model(stream)
    try:
        with atomic_write(copy) as tmp:
            tmp.write_bytes(stream.getvalue())
        write_text_atomic(digest, hashlib.sha256(stream.getvalue()).hexdigest())
        sha256_remembered([copy], _memo(entry))   # the next load does not hash it again
    except OSError:   # a read-only cache: compiled again next time, nothing more
        return compiled, "compiled (the cache is read-only: not kept)"
    return compiled, "compiled, and the compiled copy kept"


# ---------------------------------------------------------------------------------------------- the U-Net
class OpenVINOUNet:
    """A text-conditional U-Net whose forward runs an OpenVINO model: called as the torch U-Net is in sampling,
    `model(x, t, text_emb=..., low_res=..., inpaint_image=..., inpaint_mask=..., deep_cache=None)`, with a
    `glide.deep_cache.DeepCacheStep` at the default branch making it DeepCache's full or shallow forward.
    Attributes other than the call (tokenizer, encode_text, text_ctx, the blocks DeepCache counts) are the
    torch model's, which encodes the text. Safe to share between threads: each has its own infer requests."""

    def __init__(self, model, full, shallow, names: Sequence[str], depth: int, source: str, compiled: str):
        self.model = model
        self.names = list(names)
        self.depth = depth
        self.source = source              # the cache entry it was read from
        self.compiled = compiled          # how its full forward was had: compiled, or read back compiled
        self._compiled = {"full": full, "shallow": shallow}
        self._requests = threading.local()

    def __getattr__(self, name):
        return getattr(self.__dict__["model"], name)

    def _infer(self, which: str, inputs: List[np.ndarray]):
        requests = self._requests.__dict__
        if which not in requests:
            requests[which] = self._compiled[which].create_infer_request()
        request = requests[which]
        request.infer(inputs)
        return [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]

    def warm_up(self, batch_sizes: Sequence[int]):
        """Run the full forward and DeepCache's shallow path once at each batch size, on zeros: OpenVINO creates
        a model's kernels at its first run at each input shape (seconds for GLIDE's U-Nets), and every thread's
        requests use them after that."""
        for which, compiled in self._compiled.items():
            for batch in batch_sizes:
                self._infer(which, [np.zeros([batch, *(d.get_length() for d in list(port.get_partial_shape())[1:])],
                                             dtype=port.get_element_type().to_dtype()) for port in compiled.inputs])

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, deep_cache: Optional[DeepCacheStep] = None,
                 **kwargs) -> torch.Tensor:
        inputs = list(_inputs_of(self.names, x, timesteps, kwargs).values())
        if deep_cache is not None and deep_cache.depth != self.depth:
            raise ValueError(f"the int8 U-Net runs DeepCache at branch {self.depth} only, got {deep_cache.depth}")
        if deep_cache is not None and deep_cache.feature is not None:
            feature = np.ascontiguousarray(deep_cache.feature.numpy())
            out = self._infer("shallow", inputs + [feature])[0]
        else:
            out, feature = self._infer("full", inputs)
            if deep_cache is not None:
                deep_cache.feature = torch.from_numpy(feature)
        return torch.from_numpy(out).to(x.dtype)


def openvino_unet(family, component: str, model, diffusion, checkpoint_dir: Optional[Path] = None,
                  float32_pipeline: Optional[Callable[[], object]] = None) -> OpenVINOUNet:
    """The int8 OpenVINO drop-in for `model`, the float32 torch U-Net of `family`'s `component` (`diffusion` its
    process): read from the cache, or built there first (module docstring), announced on stderr with a
    progress bar. `float32_pipeline()` makes the float32 pipeline of the family that samples the calibration
    runs (given by the pipeline, which imports this module, not the other way round)."""
    _backends()
    plan = calibration_plan(family.name)
    root = cache_dir(checkpoint_dir)
    paths = family.files(checkpoint_dir)[component]
    paths = paths if isinstance(paths, list) else [paths]
    depth = default_depth(model)
    key = entry_key(sha256_remembered(paths, root / "sha256.json"), depth, plan)
    entry = _entry(root, family.name, component, key)
    names = input_names(component)
    problem = read_entry(entry, key)
    if problem is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{entry}.lock"):   # replicas building at once: one builds, the others then read
            problem = read_entry(entry, key)
            if problem is not None:
                _build(family, component, model, diffusion, entry, key, names, depth, plan, problem, float32_pipeline)
    (full, how), (shallow, _) = (compiled_model(entry, which) for which in ("full", "shallow"))
    return OpenVINOUNet(model, full, shallow, names, depth, str(entry), how)


def _build(family, component, model, diffusion, entry: Path, key: Dict, names, depth: int, plan: CalibrationPlan,
           problem: str, float32_pipeline: Callable[[], object]):
    note = "" if problem == "absent" else f" (the cached one is not usable: {problem})"
    print(f"glide: building the int8 OpenVINO model of {family.name} {component}{note}: calibrating on "
          f"{len(plan.captions)} captions' sampling runs in float32, then quantizing with NNCF; once per "
          f"checkpoint and versions, kept in {entry}", file=sys.stderr, flush=True)
    start = time.time()
    stages = _calibration_runs(component, plan) + 4
    with tqdm(total=stages, desc=f"int8 {component}", unit="stage", file=sys.stderr) as progress:
        progress.set_postfix_str("calibration runs")
        # A float32 pipeline of the family samples the calibration runs (it loads the other components it needs).
        pipe = float32_pipeline()
        items = calibration_items(pipe, component, model, diffusion, plan, names, progress)
        del pipe
        progress.set_postfix_str("converting")
        full = convert(model, names, items[0], depth, shallow=False)
        shallow_items = _features(model, items, names, depth)
        shallow = convert(model, names, shallow_items[0], depth, shallow=True)
        progress.update(1)
        progress.set_postfix_str("quantizing the full forward")
        full = quantize(full, items, names)
        progress.update(1)
        progress.set_postfix_str("quantizing DeepCache's shallow path")
        shallow = quantize(shallow, shallow_items, [*names, "feature"])
        progress.update(1)
        progress.set_postfix_str("saving")
        _write_entry(entry, {"full": full, "shallow": shallow}, key, time.time() - start)
        progress.update(1)
