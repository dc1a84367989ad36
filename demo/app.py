"""The Gradio demo: text to image, inpainting and a guidance comparison on one shared model.

    python app.py [--host H] [--port P] [--model shapes] [--device cuda] [--max-batch 8] ...

`build_demo(service)` lays out the Blocks; `main()` parses the command line and launches it.
The UI only turns widget values into requests for demo.service and shows what comes back; the
service owns validation, queueing, batching and the pipeline. Three API endpoints with plain
inputs — /generate, /inpaint and /compare — serve gradio_client users; every other event is
private to the page.
"""
import argparse
import functools
import html
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a GPU box

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from glide.images import InputError  # noqa: E402
from glide.model_registry import FAMILIES, ModelNotAvailable  # noqa: E402
from glide.pngmeta import read_settings  # noqa: E402
from samplers import Cancelled, SamplerError  # noqa: E402

from . import imaging  # noqa: E402
from .jobs import JobCancelled, QueueFull  # noqa: E402
from .models import APPROX_BYTES, human_bytes, model_label  # noqa: E402
from .service import UPSAMPLE_STEP_CHOICES, DemoService, Limits, settings_summary  # noqa: E402

log = logging.getLogger("glide.demo")

# Errors whose message is meant for the user as it is.
USER_ERRORS = (InputError, SamplerError, ModelNotAvailable, QueueFull, ValueError)
PRIVATE = dict(api_visibility="private")
EXAMPLES = [
    "a small red circle on the left on a blue background",
    "a large yellow square at the top on a black background",
    "a green triangle on the right and a purple circle on the left on a white background",
]
STAGE_TITLES = {"base": "Base model", "upsample": "Upsampler"}
# Samples are small (32 px base): show their pixels sharp rather than blurred by the browser's scaling.
CSS = """
#preview img, #gallery img, #compare-gallery img, #masked-input img, #inpaint-result img, #sweep img
    { image-rendering: pixelated; }
#masked-input img, #inpaint-result img { width: 100%; height: 100%; object-fit: contain; }
.status { min-height: 1.5em; }
"""


def user_errors(fn):
    """Raise every failure of a handler as a gr.Error with a message that says what to fix.

    Known user errors keep their message; anything else is logged with its traceback on the server
    and reported in one line, so the page never shows a traceback and the server keeps running.
    Works for plain functions and generators alike (functools.wraps keeps the signature that
    gradio inspects for gr.Request and gr.Progress).
    """
    def convert(exc: BaseException) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        if isinstance(exc, QueueFull):
            return gr.Error(str(exc), title="Queue full", print_exception=False)
        if isinstance(exc, USER_ERRORS):
            # gradio renders the message as HTML: keep echoed user input from becoming markup.
            return gr.Error(html.escape(str(exc), quote=False), title="Please check the input", print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Something went wrong on the server ({type(exc).__name__}); it has been logged. "
                        "Try again, or with other settings.", title="Server error", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                raise convert(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            raise convert(exc) from None
    return wrapper


def _session(request: Optional[gr.Request]) -> Optional[str]:
    return getattr(request, "session_hash", None) if request is not None else None


# ---------------------------------------------------------------------------------------------- controls
def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def param_control(param: dict, visible: bool, limits: Limits):
    """A widget for one plugin parameter, built from its Param description (type, default, range, help)."""
    label, info, lo, hi, default = _title(param["name"]), param["help"] or None, param["min"], param["max"], param["default"]
    if param["type"] == "bool":
        return gr.Checkbox(value=bool(default), label=label, info=info, visible=visible)
    if param["type"] in ("int", "float") and lo is not None and hi is not None and hi - lo <= 100:
        step = 1 if param["type"] == "int" else (0.05 if hi - lo <= 1 else 0.1)
        return gr.Slider(lo, hi, value=default, step=step, label=label, info=info, visible=visible)
    if param["type"] in ("int", "float"):
        return gr.Number(value=default, minimum=lo, maximum=hi, precision=0 if param["type"] == "int" else None,
                         label=label, info=info, visible=visible)
    return gr.Textbox(value=str(default), label=label, info=info, visible=visible)


class PluginPanel:
    """A dropdown of step rules or guidance strategies, and the controls of every plugin's parameters.

    Only the chosen plugin's controls are visible; `params(data)` reads the chosen plugin's values.
    Adding a sampler plugin adds its choice and controls here without touching the UI code.
    """

    def __init__(self, label: str, plugins: List[dict], default: str, limits: Limits, info: str = ""):
        self.plugins = {p["name"]: p for p in plugins}
        self.dropdown = gr.Dropdown([p["name"] for p in plugins], value=default, label=label, info=info)
        self.description = gr.Markdown(self._describe(default), elem_classes="plugin-description")
        self.controls = [(p["name"], q["name"], param_control(q, p["name"] == default, limits))
                         for p in plugins for q in p["params"]]
        self.dropdown.change(self._show, inputs=self.dropdown, outputs=[self.description] + self.widgets,
                             queue=False, **PRIVATE)

    @property
    def widgets(self) -> list:
        return [c for _, _, c in self.controls]

    @property
    def inputs(self) -> set:
        return {self.dropdown, *self.widgets}

    def _describe(self, name: str) -> str:
        plugin = self.plugins.get(name)
        return f"<small>{plugin['description']}</small>" if plugin else ""

    def _show(self, name):
        return [self._describe(name)] + [gr.update(visible=plugin == name) for plugin, _, _ in self.controls]

    def params(self, data: dict) -> Dict:
        chosen = data[self.dropdown]
        return {param: data[c] for plugin, param, c in self.controls if plugin == chosen}

    def restore(self, name: str, params: Dict) -> dict:
        """Updates that select `name` and set its parameters (from a PNG's settings)."""
        if name not in self.plugins:
            return {}
        updates = {self.dropdown: name}
        for plugin, param, c in self.controls:
            if plugin == name and param in (params or {}):
                updates[c] = params[param]
        return updates


def model_description(name: str) -> str:
    family = FAMILIES[name]
    return f"{family.description} · licence: {family.license}"


# ---------------------------------------------------------------------------------------------- following jobs
def follow(job, progress: gr.Progress, status, preview):
    """Yield UI updates while a job waits and runs: queue position, a progress bar per stage, x0 previews.

    Raises JobCancelled once the user pressed Stop (the caller shows "stopped").
    """
    last_ahead = None
    for event in job.stream():
        if event is None:
            if not job.started.is_set():
                ahead = job.ahead()
                if ahead != last_ahead:
                    last_ahead = ahead
                    yield {status: f"Waiting for the device: {ahead} request(s) ahead of yours."
                                   if ahead else "Starting…"}
            continue
        title = STAGE_TITLES.get(event.stage, event.stage)
        progress((event.step + 1, event.total), desc=title, unit="steps")
        if event.x0 is not None:
            yield {preview: imaging.preview_image(event.x0),
                   status: f"{title}: step {event.step + 1} of {event.total} (preview of the current x0 prediction)"}


def run_job(job, progress, status, preview):
    """Follow a job to its end; returns its output, or None if it was stopped (after yielding a status)."""
    try:
        yield from follow(job, progress, status, preview)
        return job.outcome()
    except (JobCancelled, Cancelled):
        yield {status: "Stopped. Nothing else was affected: other users' images carry on."}
        return None
    finally:
        if not job.done.is_set():
            job.cancel()  # the page went away or the handler was cancelled: free the device


def gallery_items(out) -> list:
    """(path, caption) pairs: the final images, then the base images when they differ."""
    items = [(p, f"{settings_summary(s)} · final") for p, s in zip(out.images, out.settings)]
    if out.base_images != out.images:
        items += [(p, f"{settings_summary(s)} · base") for p, s in zip(out.base_images, out.settings)]
    return items


def _parse_plugin_params(text) -> Dict:
    """The API's `plugin_params`: a JSON object of extra step-rule / guidance parameters, e.g. {"eta": 0.5}."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if isinstance(text, dict):
        return text
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"plugin_params must be a JSON object such as {{\"eta\": 0.5}} ({exc.msg})") from None
    if not isinstance(params, dict):
        raise InputError("plugin_params must be a JSON object such as {\"eta\": 0.5}")
    return params


# ---------------------------------------------------------------------------------------------- the Blocks
def build_demo(service: DemoService, *, concurrency: int = 1, queue_size: int = 64) -> gr.Blocks:
    """The demo's Blocks, with its queue set up for a shared device."""
    limits = service.limits
    described = service.registry.describe()
    rules, strategies = described["step_rules"], described["guidance"]
    # Requests wait in the service's scheduler, where compatible ones are batched: let enough of
    # them through gradio's queue at once for a full batch on every worker.
    in_flight = max(concurrency * limits.max_batch, concurrency)
    device_events = dict(concurrency_limit=in_flight, concurrency_id="device")
    default_steps = service.default_steps(service.default_model)

    def model_choices():
        return [(model_label(row), name) for name, row in service.models().items()]

    with gr.Blocks(title="GLIDE demo", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# GLIDE\nText-conditional diffusion with guidance ([paper](https://arxiv.org/abs/2112.10741)). "
                    "Images are PNGs that remember their settings: drop one back in to restore them.")
        with gr.Row(equal_height=True):
            model = gr.Dropdown(model_choices(), value=service.default_model, label="Model", scale=2,
                                info="Shared by everyone on this server; loaded once.", elem_id="model")
            model_info = gr.Markdown(model_description(service.default_model), elem_classes="status")
            download_btn = gr.Button("Download", visible=False, scale=0, min_width=140, elem_id="download-btn")
        download_status = gr.Markdown("", elem_classes="status")
        download_timer = gr.Timer(1.0, active=False)

        with gr.Tabs() as tabs:
            # ------------------------------------------------------------------ text to image
            with gr.Tab("Text to image", id="generate"):
                with gr.Row():
                    with gr.Column(scale=2):
                        prompt = gr.Textbox(label="Prompt", lines=2, placeholder=EXAMPLES[0], elem_id="prompt")
                        negative = gr.Textbox(label="Negative prompt", placeholder="what to steer away from (optional)")
                        with gr.Row():
                            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
                        gr.Examples(EXAMPLES, inputs=prompt, label="Examples")
                        with gr.Row():
                            with gr.Column():
                                rule_panel = PluginPanel("Step rule", rules, "ddim", limits)
                            with gr.Column():
                                guide_panel = PluginPanel("Guidance", strategies, "classifier-free", limits)
                        steps = gr.Slider(1, limits.max_steps, value=default_steps, step=1, label="Steps",
                                          info="Base model sampling steps", elem_id="steps")
                        with gr.Row():
                            seed = gr.Number(-1, precision=0, label="Seed", info="-1 = random", minimum=-1, scale=2)
                            with gr.Column(scale=1, min_width=160):
                                random_btn = gr.Button("Random seed", size="sm")
                                reuse_btn = gr.Button("Reuse last seed", size="sm")
                        batch = gr.Slider(1, limits.max_batch, value=1, step=1, label="Batch size")
                        with gr.Row():
                            upsample = gr.Checkbox(True, label="Upsample", info="Run the upsampler after the base model")
                            upsample_temp = gr.Slider(0.5, 1.0, value=0.997, step=0.001, label="Upsample temperature",
                                                      info="Scales the upsampler's initial noise")
                            upsample_steps = gr.Dropdown(UPSAMPLE_STEP_CHOICES, value="fast27", allow_custom_value=True,
                                                         label="Upsample steps")
                        with gr.Accordion("Restore settings from an image", open=False):
                            settings_drop = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                                     label="Drop a PNG made here to restore its settings", height=160,
                                                     elem_id="settings-drop")
                    with gr.Column(scale=3):
                        status = gr.Markdown("", elem_classes="status", elem_id="status")
                        preview = gr.Image(label="Live preview", interactive=False, height=256, elem_id="preview",
                                           format="png")
                        gallery = gr.Gallery(label="Images (final, then base)", columns=4, height="auto",
                                             format="png", elem_id="gallery", interactive=False)
                        with gr.Row():
                            to_inpaint_btn = gr.Button("Edit the selected image in Inpainting", size="sm")
                        with gr.Accordion("Settings of the first image", open=False):
                            settings_view = gr.JSON(label="Settings")
                last_seed = gr.State(None)
                result_paths = gr.State([])
                selected = gr.State(0)

            # ------------------------------------------------------------------ inpainting
            with gr.Tab("Inpainting", id="inpaint"):
                with gr.Row():
                    with gr.Column(scale=2):
                        editor = gr.ImageMask(type="pil", label="Image: paint over the region to replace",
                                              sources=["upload", "clipboard"], format="png", height=420,
                                              brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=16),
                                              elem_id="editor")
                        in_prompt = gr.Textbox(label="Prompt for the painted region", lines=2, elem_id="inpaint-prompt")
                        with gr.Row():
                            inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="inpaint-btn")
                            in_stop_btn = gr.Button("Stop", variant="stop")
                        with gr.Accordion("Settings", open=False):
                            with gr.Row():
                                with gr.Column():
                                    in_rule_panel = PluginPanel("Step rule", rules, "ddim", limits)
                                with gr.Column():
                                    in_guide_panel = PluginPanel("Guidance", strategies, "classifier-free", limits)
                            in_steps = gr.Slider(1, limits.max_steps, value=default_steps, step=1, label="Steps")
                            in_seed = gr.Number(-1, precision=0, label="Seed", info="-1 = random", minimum=-1)
                            in_upsample = gr.Checkbox(True, label="Upsample")
                    with gr.Column(scale=3):
                        in_status = gr.Markdown("", elem_classes="status")
                        in_preview = gr.Image(label="Live preview", interactive=False, height=200, format="png")
                        with gr.Row():
                            masked_view = gr.Image(label="Input (region to replace greyed)", interactive=False,
                                                   format="png", elem_id="masked-input", height=320)
                            in_result = gr.Image(label="Result", interactive=False, format="png", elem_id="inpaint-result",
                                                 height=320)
                        again_btn = gr.Button("Use the result as the next input (successive edits)", size="sm")
                in_result_path = gr.State(None)

            # ------------------------------------------------------------------ comparison
            with gr.Tab("Guidance comparison", id="compare"):
                with gr.Row():
                    with gr.Column(scale=2):
                        cmp_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="compare-prompt")
                        with gr.Row():
                            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                            cmp_stop_btn = gr.Button("Stop", variant="stop")
                        cmp_seed = gr.Number(-1, precision=0, label="Seed", info="-1 = random; one seed for all three",
                                             minimum=-1)
                        with gr.Row():
                            cmp_rule = gr.Dropdown([r["name"] for r in rules], value="ddim", label="Step rule")
                            cmp_steps = gr.Slider(1, limits.max_steps, value=default_steps, step=1, label="Steps",
                                                  elem_id="compare-steps")
                        clip_scale = gr.Slider(0, 100, value=3.0, step=0.5, label="CLIP guidance scale")
                        cfg_scale = gr.Slider(0, 20, value=3.0, step=0.1, label="Classifier-free guidance scale")
                        cmp_upsample = gr.Checkbox(False, label="Upsample (slower)")
                        sweep = gr.Textbox(label="Sweep scales (optional)", placeholder="e.g. 1, 3, 5, 8",
                                           info=f"Samples CLIP and classifier-free guidance at each scale "
                                                f"(at most {limits.max_sweep}) into a grid")
                    with gr.Column(scale=3):
                        cmp_status = gr.Markdown("", elem_classes="status")
                        cmp_preview = gr.Image(label="Live preview", interactive=False, height=160, format="png")
                        cmp_gallery = gr.Gallery(label="Same prompt, same seed", columns=3, height="auto",
                                                 format="png", elem_id="compare-gallery", interactive=False)
                        cmp_table = gr.Dataframe(headers=["guidance", "scale", "seconds", "CLIP score", "checker"],
                                                 label="Scores", interactive=False)
                        sweep_view = gr.Image(label="Sweep", interactive=False, format="png", visible=False,
                                              elem_id="sweep")

        # ---------------------------------------------------------------------- API (plain inputs, image outputs)
        with gr.Column(visible=False):
            api_prompt = gr.Textbox(label="prompt")
            api_negative = gr.Textbox("", label="negative_prompt")
            api_seed = gr.Number(-1, precision=0, label="seed")
            api_batch = gr.Number(1, precision=0, label="batch_size")
            api_steps = gr.Number(0, precision=0, label="steps")  # 0: the model's default
            api_sampler = gr.Dropdown([r["name"] for r in rules], value="ddim", label="sampler")
            api_guidance = gr.Dropdown([g["name"] for g in strategies], value="classifier-free", label="guidance")
            api_scale = gr.Number(3.0, label="guidance_scale")
            api_upsample = gr.Checkbox(True, label="upsample")
            api_up_steps = gr.Textbox("fast27", label="upsample_steps")
            api_up_temp = gr.Number(0.997, label="upsample_temp")
            api_plugin_params = gr.Textbox("", label="plugin_params")
            api_model = gr.Textbox(service.default_model, label="model")
            api_image = gr.File(label="image", type="filepath")
            api_mask = gr.File(label="mask", type="filepath")
            api_clip_scale = gr.Number(3.0, label="clip_scale")
            api_cfg_scale = gr.Number(3.0, label="cfg_scale")
            api_cmp_upsample = gr.Checkbox(False, label="upsample")
            api_sweep = gr.Textbox("", label="sweep")
            api_gallery = gr.Gallery(format="png", label="images")
            api_scores = gr.JSON(label="scores")
            api_grid = gr.Image(format="png", label="sweep_grid", type="filepath")
            api_generate_btn, api_inpaint_btn, api_compare_btn = gr.Button(), gr.Button(), gr.Button()

        # ---------------------------------------------------------------------- handlers: text to image
        @user_errors
        def on_generate(data, request: gr.Request, progress=gr.Progress()):
            req = service.sample_request(
                data[prompt], model=data[model], seed=data[seed], batch_size=data[batch],
                negative_prompt=data[negative], sampler=data[rule_panel.dropdown],
                sampler_params=rule_panel.params(data), steps=data[steps], guidance=data[guide_panel.dropdown],
                guidance_params=guide_panel.params(data), upsample=data[upsample],
                upsample_steps=data[upsample_steps], upsample_temp=data[upsample_temp])
            job = service.submit_generate(req, session=_session(request), previews=True)
            yield {status: "Queued…"}
            out = yield from run_job(job, progress, status, preview)
            if out is None:
                return
            used = out.settings[0]["seed"]
            yield {gallery: gallery_items(out), result_paths: out.images + [p for p in out.base_images
                                                                             if p not in out.images],
                   selected: 0, last_seed: used, settings_view: out.settings[0],
                   status: f"{len(out.images)} image(s) in {out.seconds:.1f} s · seed {used}"
                           + (f"–{used + len(out.images) - 1}" if len(out.images) > 1 else "")}

        generate_inputs = {prompt, negative, model, seed, batch, steps, upsample, upsample_steps, upsample_temp,
                           *rule_panel.inputs, *guide_panel.inputs}
        generate_outputs = [status, preview, gallery, result_paths, selected, last_seed, settings_view]
        # The progress bar covers the gallery, not the live preview it would hide.
        gr.on([generate_btn.click, prompt.submit], on_generate, inputs=generate_inputs, outputs=generate_outputs,
              show_progress_on=gallery, **device_events, **PRIVATE)

        def on_stop(request: gr.Request):
            n = service.cancel_session(_session(request))
            return "Stopping…" if n else "Nothing of yours is running."

        stop_btn.click(on_stop, outputs=status, queue=False, **PRIVATE)
        random_btn.click(lambda: -1, outputs=seed, queue=False, **PRIVATE)

        def on_reuse(last):
            if last is None:
                gr.Warning("No image generated yet: there is no last seed to reuse.")
                return gr.skip()
            return last

        reuse_btn.click(on_reuse, inputs=last_seed, outputs=seed, queue=False, **PRIVATE)

        @user_errors
        def on_settings_drop(path):
            if not path:
                return {}
            settings = read_settings(imaging.open_upload(path, "image", limits.max_image_side))
            if settings is None:
                gr.Warning("This image carries no GLIDE settings (only PNGs made by this demo or the CLI do).")
                return {}
            updates = {prompt: settings.get("prompt", ""), negative: settings.get("negative_prompt", ""),
                       seed: settings.get("seed", -1), batch: 1,
                       upsample: settings.get("upsample", True), upsample_temp: settings.get("upsample_temp", 0.997),
                       upsample_steps: str(settings.get("upsample_steps", "fast27")),
                       status: f"Restored the settings of seed {settings.get('seed')} "
                               f"({settings.get('model', '?')}): press Generate to make it again."}
            if str(settings.get("steps", "")).isdigit():
                updates[steps] = int(settings["steps"])
            if settings.get("model") in FAMILIES:
                updates[model] = settings["model"]
            updates.update(rule_panel.restore(settings.get("sampler"), settings.get("sampler_params")))
            updates.update(guide_panel.restore(settings.get("guidance"), settings.get("guidance_params")))
            return updates

        settings_drop.upload(on_settings_drop, inputs=settings_drop,
                             outputs=[prompt, negative, seed, batch, steps, upsample, upsample_temp, upsample_steps,
                                      model, status, rule_panel.dropdown, guide_panel.dropdown,
                                      *rule_panel.widgets, *guide_panel.widgets], **PRIVATE)

        def on_select(evt: gr.SelectData):
            return evt.index

        gallery.select(on_select, outputs=selected, queue=False, **PRIVATE)

        def editor_value(path):
            # The brush paints on a layer: without an empty one the canvas would take no strokes.
            size = imaging.open_upload(path, "image", limits.max_image_side).size
            return {"background": path, "layers": [Image.new("RGBA", size, (0, 0, 0, 0))], "composite": path}

        def on_to_inpaint(paths, index, text):
            if not paths:
                gr.Warning("Generate an image first, then select it in the gallery.")
                return gr.skip(), gr.skip(), gr.skip()
            path = paths[min(index or 0, len(paths) - 1)]
            return editor_value(path), text, gr.Tabs(selected="inpaint")

        to_inpaint_btn.click(on_to_inpaint, inputs=[result_paths, selected, prompt],
                             outputs=[editor, in_prompt, tabs], queue=False, **PRIVATE)

        # ---------------------------------------------------------------------- handlers: inpainting
        @user_errors
        def on_inpaint(data, request: gr.Request, progress=gr.Progress()):
            image, mask = imaging.editor_to_image_and_mask(data[editor], limits.max_image_side)
            req = service.sample_request(
                data[in_prompt], model=data[model], seed=data[in_seed], sampler=data[in_rule_panel.dropdown],
                sampler_params=in_rule_panel.params(data), steps=data[in_steps],
                guidance=data[in_guide_panel.dropdown], guidance_params=in_guide_panel.params(data),
                upsample=data[in_upsample])
            job = service.submit_inpaint(req, image, mask, session=_session(request), previews=True)
            yield {in_status: "Queued…"}
            out = yield from run_job(job, progress, in_status, in_preview)
            if out is None:
                return
            yield {masked_view: out.masked_input, in_result: out.images[0], in_result_path: out.images[0],
                   in_status: f"Done in {out.seconds:.1f} s · seed {out.settings[0]['seed']}"}

        gr.on([inpaint_btn.click, in_prompt.submit], on_inpaint,
              inputs={editor, in_prompt, model, in_seed, in_steps, in_upsample, *in_rule_panel.inputs,
                      *in_guide_panel.inputs},
              outputs=[in_status, in_preview, masked_view, in_result, in_result_path], show_progress_on=in_result,
              **device_events, **PRIVATE)
        in_stop_btn.click(on_stop, outputs=in_status, queue=False, **PRIVATE)

        def on_again(path):
            if not path:
                gr.Warning("Run an inpainting first: its result becomes the next input.")
                return gr.skip()
            return editor_value(path)

        again_btn.click(on_again, inputs=in_result_path, outputs=editor, queue=False, **PRIVATE)

        # ---------------------------------------------------------------------- handlers: comparison
        @user_errors
        def on_compare(text, model_name, seed_value, rule, n_steps, clip_s, cfg_s, up, sweep_text,
                       request: gr.Request, progress=gr.Progress()):
            req = service.compare_request(text, model=model_name, seed=seed_value, sampler=rule, steps=n_steps,
                                          clip_scale=clip_s, cfg_scale=cfg_s, upsample=up, sweep=sweep_text)
            job = service.submit_compare(req, session=_session(request), previews=True)
            yield {cmp_status: "Queued…"}
            out = yield from run_job(job, progress, cmp_status, cmp_preview)
            if out is None:
                return
            yield {cmp_gallery: [(e["image"], e["caption"]) for e in out.entries],
                   cmp_table: [[e["guidance"], e["scale"], e["seconds"],
                                None if e["clip_score"] is None else round(e["clip_score"], 4), e["verdict"]]
                               for e in out.entries],
                   sweep_view: gr.update(value=out.grid, visible=out.grid is not None),
                   cmp_status: f"Seed {out.seed}: same prompt and seed, three kinds of guidance."}

        gr.on([compare_btn.click, cmp_prompt.submit], on_compare,
              inputs=[cmp_prompt, model, cmp_seed, cmp_rule, cmp_steps, clip_scale, cfg_scale, cmp_upsample, sweep],
              outputs=[cmp_status, cmp_preview, cmp_gallery, cmp_table, sweep_view], show_progress_on=cmp_gallery,
              **device_events, **PRIVATE)
        cmp_stop_btn.click(on_stop, outputs=cmp_status, queue=False, **PRIVATE)

        # ---------------------------------------------------------------------- model choice and downloads
        def on_model(name):
            rows = service.models()
            row = rows.get(name)
            ready = bool(row) and all(c["ready"] for c in row["components"].values())
            n = service.default_steps(name)
            size = f" ≈{human_bytes(APPROX_BYTES[name])}" if name in APPROX_BYTES else ""
            return (model_description(name), gr.update(visible=not ready and name in APPROX_BYTES,
                                                       value=f"Download{size}"),
                    service.downloads.describe(name), n, n, n)

        model.change(on_model, inputs=model, outputs=[model_info, download_btn, download_status, steps, in_steps,
                                                      cmp_steps], queue=False, **PRIVATE)

        @user_errors
        def on_download(name):
            service.downloads.start(name)
            return service.downloads.describe(name), gr.Timer(active=True)

        download_btn.click(on_download, inputs=model, outputs=[download_status, download_timer], queue=False,
                           **PRIVATE)

        def on_tick(name):
            s = service.downloads.status(name)
            running = s["state"] == "running"
            return (service.downloads.describe(name), gr.Timer(active=running),
                    gr.update(choices=model_choices()), gr.update(visible=s["state"] in ("idle", "error")))

        download_timer.tick(on_tick, inputs=model, outputs=[download_status, download_timer, model, download_btn],
                            queue=False, **PRIVATE)
        # Readiness can change while the server runs (a download, `make train-default`): refresh on load.
        demo.load(lambda: gr.update(choices=model_choices()), outputs=model, queue=False, **PRIVATE)

        # ---------------------------------------------------------------------- the API endpoints
        @user_errors
        def generate_api(prompt, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale,
                         upsample, upsample_steps, upsample_temp, plugin_params, model, request: gr.Request):
            """Text to image. Returns the final images: PNGs whose text chunks hold their settings."""
            extra = _check_extra(service, sampler, guidance, _parse_plugin_params(plugin_params))
            req = service.sample_request(prompt, model=model, seed=seed, batch_size=batch_size,
                                         negative_prompt=negative_prompt, sampler=sampler, sampler_params=extra,
                                         steps=steps or None, guidance=guidance, guidance_params=extra,
                                         guidance_scale=guidance_scale, upsample=upsample,
                                         upsample_steps=upsample_steps, upsample_temp=upsample_temp)
            out = service.submit_generate(req, session=_session(request)).wait()
            return [(p, settings_summary(s)) for p, s in zip(out.images, out.settings)]

        api_generate_btn.click(generate_api, inputs=[api_prompt, api_negative, api_seed, api_batch, api_steps,
                                                     api_sampler, api_guidance, api_scale, api_upsample, api_up_steps,
                                                     api_up_temp, api_plugin_params, api_model],
                               outputs=api_gallery, api_name="generate", **device_events)

        @user_errors
        def inpaint_api(prompt, image, mask, negative_prompt, seed, batch_size, steps, sampler, guidance,
                        guidance_scale, upsample, upsample_steps, upsample_temp, plugin_params, model,
                        request: gr.Request):
            """Inpainting: white (or painted, in an RGBA mask's alpha) pixels of `mask` are replaced to match the prompt."""
            extra = _check_extra(service, sampler, guidance, _parse_plugin_params(plugin_params))
            req = service.sample_request(prompt, model=model, seed=seed, batch_size=batch_size,
                                         negative_prompt=negative_prompt, sampler=sampler, sampler_params=extra,
                                         steps=steps or None, guidance=guidance, guidance_params=extra,
                                         guidance_scale=guidance_scale, upsample=upsample,
                                         upsample_steps=upsample_steps, upsample_temp=upsample_temp)
            out = service.submit_inpaint(req, image, mask, session=_session(request)).wait()
            return [(p, settings_summary(s)) for p, s in zip(out.images, out.settings)]

        api_inpaint_btn.click(inpaint_api, inputs=[api_prompt, api_image, api_mask, api_negative, api_seed, api_batch,
                                                   api_steps, api_sampler, api_guidance, api_scale, api_upsample,
                                                   api_up_steps, api_up_temp, api_plugin_params, api_model],
                              outputs=api_gallery, api_name="inpaint", **device_events)

        @user_errors
        def compare_api(prompt, seed, steps, sampler, clip_scale, cfg_scale, upsample, sweep, model,
                        request: gr.Request):
            """CLIP-guided, classifier-free and unguided samples of one prompt and seed, their scores, and a sweep grid."""
            req = service.compare_request(prompt, model=model, seed=seed, sampler=sampler, steps=steps or None,
                                          clip_scale=clip_scale, cfg_scale=cfg_scale, upsample=upsample, sweep=sweep)
            out = service.submit_compare(req, session=_session(request)).wait()
            scores = [{k: e[k] for k in ("guidance", "scale", "seconds", "clip_score", "checker", "verdict")}
                      for e in out.entries]
            return [(e["image"], e["caption"]) for e in out.entries], {"seed": out.seed, "entries": scores}, out.grid

        api_compare_btn.click(compare_api, inputs=[api_prompt, api_seed, api_steps, api_sampler, api_clip_scale,
                                                   api_cfg_scale, api_cmp_upsample, api_sweep, api_model],
                              outputs=[api_gallery, api_scores, api_grid], api_name="compare", **device_events)

    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo


def _check_extra(service: DemoService, sampler: str, guidance: str, extra: Dict) -> Dict:
    """API plugin parameters must belong to the chosen step rule or guidance strategy."""
    known = {p.name for p in service.registry.step_rule(sampler or "ddim").params}
    known |= {p.name for p in service.registry.guidance_strategy(guidance or "classifier-free").params}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise InputError(f"plugin_params {unknown} belong to neither {sampler!r} nor {guidance!r}; "
                         f"their parameters: {sorted(known) or 'none'}")
    return extra


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    import torch

    parser = argparse.ArgumentParser(description="The GLIDE Gradio demo")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--model", default="shapes", choices=sorted(FAMILIES), help="the model selected at start")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="where glide-filtered's checkpoints are (default $GLIDE_CACHE_DIR or ~/.cache/glide)")
    parser.add_argument("--max-batch", type=int, default=8, help="images per request and per batched run")
    parser.add_argument("--max-steps", type=int, default=250, help="sampling steps per stage")
    parser.add_argument("--concurrency", type=int, default=1, help="sampling runs on the device at once")
    parser.add_argument("--queue-size", type=int, default=64, help="requests that may wait; more get 'queue full'")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="require a login (repeat for more users)")
    args = parser.parse_args(argv)
    for name in ("max_batch", "max_steps", "concurrency", "queue_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(":" not in a for a in args.auth):
        parser.error("--auth takes USER:PASS")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = DemoService(default_model=args.model, device=args.device, dtype=args.dtype,
                          checkpoint_dir=args.checkpoint_dir,
                          limits=Limits(max_batch=args.max_batch, max_steps=args.max_steps),
                          concurrency=args.concurrency, queue_size=args.queue_size)
    service.warm_up()
    demo = build_demo(service, concurrency=args.concurrency, queue_size=args.queue_size)
    in_flight = args.concurrency * args.max_batch
    demo.launch(server_name=args.host, server_port=args.port,
                auth=[tuple(a.split(":", 1)) for a in args.auth] or None,
                allowed_paths=[str(service.out_dir)], max_file_size="25mb", show_error=False,
                max_threads=max(40, 2 * in_flight + 8), css=CSS, theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
