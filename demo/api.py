"""The demo's API for gradio_client: /generate, /inpaint, /upscale and /compare, with plain inputs and image outputs.

Each endpoint needs only its prompt (plus image and mask for /inpaint, an image for /upscale); everything else has a
default. The endpoints use their own hidden components, so the UI's richer events (previews,
progress, plugin controls) can change without breaking clients:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    images = client.predict("a small red circle on the left on a blue background", api_name="/generate")
    images = client.predict(prompt, handle_file("in.png"), handle_file("mask.png"), api_name="/inpaint")
    images = client.predict(prompt, handle_file("small.png"), api_name="/upscale")
    images, scores, grid = client.predict(prompt, seeds=4, sweep="1, 3, 5", api_name="/compare")
    images, scores, grid = client.predict(prompt, strategies="classifier-free, my-plugin", api_name="/compare")

Images come back as PNG files whose text chunks hold the settings that regenerate them.
"""
import inspect
import json
from typing import Dict, Optional, Union

import gradio as gr
from gradio.data_classes import FileData, GradioRootModel

from glide import comparison
from glide.declarations import Setting, for_mode
from glide.errors import InputError
from glide.families import get_family
from glide.settings import COMPARE_SEEDS, ignored_negative_prompt

from .context import Context
from .service import settings_summary
from .widgets import answer, caller, user_errors, warn


def parse_plugin_params(text) -> Dict:
    """`plugin_params`: a JSON object of extra step-rule / guidance parameters, e.g. {"eta": 0.5}."""
    if isinstance(text, dict):
        return text
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"plugin_params must be a JSON object such as {{\"eta\": 0.5}} ({exc.msg})") from None
    if not isinstance(params, dict):
        raise InputError("plugin_params must be a JSON object such as {\"eta\": 0.5}")
    return params


class UploadOrPlainPath(GradioRootModel):
    """A file input of /inpaint as it arrives: an upload (gradio_client.handle_file) or, by mistake, a plain path
    string, which reaches the handler so that it can say what to do (gradio's own check refuses a string with
    an error a client cannot act on). The API still describes the input as a file."""

    root: Union[FileData, str]

    @classmethod
    def model_json_schema(cls, *args, **kwargs):
        return FileData.model_json_schema(*args, **kwargs)


def file_input(label: str) -> gr.File:
    """A file input that lets a plain path string through to the handler (`uploaded`), on an event with
    preprocess=False; files still go through gradio's checks (an upload, in its upload folder)."""
    file = gr.File(label=label, type="filepath")
    file.data_model = UploadOrPlainPath
    return file


def uploaded(value, name: str) -> Optional[str]:
    """The server-side path of a file input's raw value, or an InputError for a plain path string."""
    if isinstance(value, str):
        raise InputError(f"{name} is a plain string ({value[:80]!r}); give files with gradio_client's "
                         f"handle_file, which uploads them: e.g. client.predict(prompt, handle_file(\"in.png\"), "
                         "handle_file(\"mask.png\"), api_name=\"/inpaint\")")
    return value["path"] if value else None


def setting_value(setting: Setting, value):
    """An API input as its setting's value: a blank text field is not given (None), plugin_params is JSON."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_plugin_params(value) if setting.kind == "params" else value


def _setting_input(setting: Setting, ctx: Context) -> gr.components.Component:
    """The hidden input of one setting: its parameter takes the setting's name, default and description. Numbers
    keep their decimals (precision None), so that the settings refuse 2.5 steps rather than the input round it."""
    common = dict(label=setting.name, info=setting.describe())
    if setting.kind == "bool":
        return gr.Checkbox(setting.default, **common)
    if setting.kind in ("int", "float"):
        return gr.Number(setting.default, **common)
    if setting.kind == "image":   # a file, not gr.Image: a broken upload then reaches the handler, which names it
        return gr.File(type="filepath", label=setting.name)
    if setting.kind in ("step_rule", "strategy"):
        # The registry's names; any other is allowed through, so that the settings name the problem.
        names = [p["name"] for p in (ctx.rules if setting.kind == "step_rule" else ctx.strategies)]
        return gr.Dropdown(names, value=setting.default, allow_custom_value=True, **common)
    return gr.Textbox(setting.default, **common)


def _endpoint(run, leading, settings, doc: str):
    """A handler `run(leading values..., settings dict, request)` as gradio sees an endpoint: one parameter per
    leading input and per setting (named after it, with its declared default), then the request."""
    @user_errors
    def handler(*args):
        *values, request = args
        given = {s.name: setting_value(s, v) for s, v in zip(settings, values[len(leading):])}
        return run(*values[:len(leading)], {k: v for k, v in given.items() if v is not None}, request)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(name, positional) for name in leading]
        + [inspect.Parameter(s.name, positional, default=s.default) for s in settings]
        + [inspect.Parameter("request", positional, default=None, annotation=gr.Request)])
    handler.__annotations__ = {"request": gr.Request}
    handler.__doc__ = doc
    return handler


def add_api(ctx: Context) -> None:
    """Hidden components and the four named endpoints (call inside the Blocks)."""
    service = ctx.service
    generate_settings, inpaint_settings, upscale_settings = for_mode("generate"), for_mode("inpaint"), for_mode("upsample")
    with gr.Column(visible=False):
        prompt = gr.Textbox(label="prompt")
        # One input per setting, shared by the endpoints that take it (/compare's seed, steps, sampler and model too).
        inputs = {s.name: _setting_input(s, ctx)
                  for s in (*generate_settings, *inpaint_settings, *upscale_settings, *for_mode("compare"))}
        # Files rather than gr.Image: a broken upload then reaches our handler, which says what is wrong.
        image = file_input("image")
        mask = file_input("mask (white: the region to replace)")
        clip_scale = gr.Textbox("", label="clip_scale")
        cfg_scale = gr.Textbox("", label="cfg_scale")
        compare_upsample = gr.Checkbox(False, label="upsample")
        sweep = gr.Textbox("", label="sweep")
        # Any installed strategies, comma-separated; empty: CLIP guidance, classifier-free and unguided.
        strategies = gr.Textbox("", label="strategies")
        compare_seeds = gr.Number(COMPARE_SEEDS, label="seeds", precision=None)
        images = gr.Gallery(format="png", label="images")
        scores = gr.JSON(label="scores")
        grid = gr.Image(format="png", label="grid", type="filepath")
        generate_btn, inpaint_btn, upscale_btn, compare_btn = gr.Button(), gr.Button(), gr.Button(), gr.Button()


    def images_of(out):
        return [(p, settings_summary(s)) for p, s in zip(out.images, out.settings)]

    def warn_about(prompt, settings):
        """A prompt the model cannot draw, or a negative prompt the guidance ignores, gets a warning, as the
        UI's notices and the CLI say it."""
        for warning in (get_family(settings.get("model") or service.default_model).prompt_warning(prompt),
                        ignored_negative_prompt(settings.get("negative_prompt"), settings.get("guidance"))):
            if warning:
                warn(warning)

    def generate(prompt, settings, request):
        warn_about(prompt, settings)
        if "init_image" in settings:   # the upload, checked and opened once: its digest and its pixels
            settings["init_image"] = service.open_image(settings["init_image"], "init_image")
        req = service.sample_request(prompt, **settings)
        out = answer(service.submit_generate(req, init_image=settings.get("init_image"), **caller(service, request)))
        return images_of(out)

    def inpaint(prompt, image, mask, settings, request):
        image, mask = uploaded(image, "image"), uploaded(mask, "mask")
        warn_about(prompt, settings)
        req = service.sample_request(prompt, mode="inpaint", **settings)
        out = answer(service.submit_inpaint(req, image, mask, **caller(service, request)))
        return images_of(out)

    def upscale(prompt, image, settings, request):
        image = uploaded(image, "image")
        warn_about(prompt, settings)
        req = service.sample_request(prompt, mode="upsample", **settings)
        out = answer(service.submit_upsample(req, [image], **caller(service, request)))
        return images_of(out)

    # The settings' order is their declaration order, new ones last: clients passing the earlier ones by
    # position keep working.
    generate_btn.click(
        _endpoint(generate, ["prompt"], generate_settings,
                  "Text to image. Returns the final images: PNGs whose text chunks hold their settings."),
        inputs=[prompt, *(inputs[s.name] for s in generate_settings)],
        outputs=images, api_name="generate", **ctx.device_events)
    inpaint_btn.click(
        _endpoint(inpaint, ["prompt", "image", "mask"], inpaint_settings,
                  "Inpainting: white pixels of `mask` (or painted ones, in an RGBA mask's alpha; any size: resized "
                  "to the image) are replaced to match the prompt; the images are the whole picture at its size. "
                  "Give files with gradio_client.handle_file."),
        inputs=[prompt, image, mask, *(inputs[s.name] for s in inpaint_settings)],
        # Raw values (preprocess=False), so that the handler sees a plain path and names the problem.
        outputs=images, api_name="inpaint", preprocess=False, **ctx.device_events)
    upscale_btn.click(
        _endpoint(upscale, ["prompt", "image"], upscale_settings,
                  "Upscaling: the model's upsampler on `image` (centre-cropped and resized to the base size), "
                  "described by the prompt; give the file with gradio_client.handle_file."),
        inputs=[prompt, image, *(inputs[s.name] for s in upscale_settings)],
        outputs=images, api_name="upscale", preprocess=False, **ctx.device_events)

    @user_errors
    def compare(prompt, seed=None, steps=None, sampler=None, clip_scale="", cfg_scale="", upsample=False, sweep="",
                model=None, strategies="", seeds=COMPARE_SEEDS, request: gr.Request = None):
        """One prompt under several guidance strategies (default CLIP, classifier-free, unguided), each over the
        same `seeds` seeds from `seed` (a sweep adds a row per scale): the images row by row, the scores (per
        row its fidelity and spread of layouts, the most faithful marked only beyond noise) and the whole
        comparison as one PNG."""
        blank = lambda value: None if isinstance(value, str) and not value.strip() else value
        warn_about(prompt, {"model": blank(model)})
        req = ctx.service.compare_request(prompt, model=blank(model), seed=seed, seeds=blank(seeds),
                                          sampler=blank(sampler), steps=blank(steps), clip_scale=blank(clip_scale),
                                          cfg_scale=blank(cfg_scale), upsample=upsample, sweep=sweep,
                                          strategies=strategies)
        out = answer(service.submit_compare(req, **caller(service, request)))
        gallery = [(path, f"{row.title} · {comparison.caption(entry)}")
                   for row, paths in zip(out.rows, out.images) for entry, path in zip(row.entries, paths)]
        scores = {"seed": out.seeds[0], "seeds": out.seeds, "rows": [row.as_dict() for row in out.rows],
                  "verdict": comparison.verdict(out.rows), "legend": dict(comparison.legend(out.rows))}
        return gallery, scores, out.grid

    # New inputs go last: clients passing the earlier ones by position keep working.
    compare_btn.click(compare, inputs=[prompt, inputs["seed"], inputs["steps"], inputs["sampler"], clip_scale, cfg_scale,
                                       compare_upsample, sweep, inputs["model"], strategies, compare_seeds],
                      outputs=[images, scores, grid], api_name="compare", **ctx.device_events)
