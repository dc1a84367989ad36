"""The demo's API for gradio_client: /generate, /inpaint and /compare, with plain inputs and image outputs.

Each endpoint needs only its prompt (plus image and mask for /inpaint); everything else has a
default. The endpoints use their own hidden components, so the UI's richer events (previews,
progress, plugin controls) can change without breaking clients:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    images = client.predict("a small red circle on the left on a blue background", api_name="/generate")
    images = client.predict(prompt, handle_file("in.png"), handle_file("mask.png"), api_name="/inpaint")
    images, scores, grid = client.predict(prompt, sweep="1, 3, 5", api_name="/compare")
    images, scores, grid = client.predict(prompt, strategies="classifier-free, my-plugin", api_name="/compare")

Images come back as PNG files whose text chunks hold the settings that regenerate them.
"""
import json
from typing import Dict

import gradio as gr

from glide.errors import InputError

from .context import Context
from .service import settings_summary
from .widgets import answer, caller, user_errors


def parse_plugin_params(text) -> Dict:
    """`plugin_params`: a JSON object of extra step-rule / guidance parameters, e.g. {"eta": 0.5}."""
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


def add_api(ctx: Context) -> None:
    """Hidden components and the three named endpoints (call inside the Blocks)."""
    service = ctx.service
    with gr.Column(visible=False):
        # Labels become the parameter names clients see; values are the defaults.
        prompt = gr.Textbox(label="prompt")
        negative = gr.Textbox("", label="negative_prompt")
        seed = gr.Number(-1, precision=0, label="seed")                      # -1: random
        batch = gr.Number(1, precision=0, label="batch_size")
        steps = gr.Number(0, precision=0, label="steps")                     # 0: the model's default
        # "" (the default) is the requested model's own rule, which differs between families.
        rule_names = ["", *(r["name"] for r in ctx.rules)]
        sampler = gr.Dropdown(rule_names, value="", allow_custom_value=True, label="sampler")
        guidance = gr.Dropdown([g["name"] for g in ctx.strategies], value="classifier-free", label="guidance")
        # Optional numbers are text fields: empty means the default (the strategy's own scale, GLIDE's
        # upsampler temperature), which a number field cannot say; numbers sent by clients are read as such.
        scale = gr.Textbox("", label="guidance_scale")
        upsample = gr.Checkbox(True, label="upsample")
        upsample_steps = gr.Textbox("", label="upsample_steps")              # empty: the model's default
        upsample_temp = gr.Textbox("", label="upsample_temp")
        plugin_params = gr.Textbox("", label="plugin_params")
        model = gr.Textbox(service.default_model, label="model")
        upsample_sampler = gr.Dropdown(rule_names, value="", allow_custom_value=True, label="upsample_sampler")
        deep_cache = gr.Number(0, precision=0, label="deep_cache")                    # 0: off
        upsample_deep_cache = gr.Number(0, precision=0, label="upsample_deep_cache")
        preset = gr.Textbox("", label="preset")                              # empty: none ("fast": PRESETS)
        # Files rather than gr.Image: a broken upload then reaches our handler, which says what is wrong.
        image = gr.File(label="image", type="filepath")
        mask = gr.File(label="mask", type="filepath")
        clip_scale = gr.Textbox("", label="clip_scale")
        cfg_scale = gr.Textbox("", label="cfg_scale")
        compare_upsample = gr.Checkbox(False, label="upsample")
        sweep = gr.Textbox("", label="sweep")
        # Any installed strategies, comma-separated; empty: CLIP guidance, classifier-free and unguided.
        strategies = gr.Textbox("", label="strategies")
        images = gr.Gallery(format="png", label="images")
        scores = gr.JSON(label="scores")
        grid = gr.Image(format="png", label="sweep_grid", type="filepath")
        generate_btn, inpaint_btn, compare_btn = gr.Button(), gr.Button(), gr.Button()

    def request_of(prompt, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale, upsample,
                   upsample_steps, upsample_temp, plugin_params, model, upsample_sampler, deep_cache,
                   upsample_deep_cache, preset):
        return service.sample_request(prompt, model=model, seed=seed, batch_size=batch_size,
                                      negative_prompt=negative_prompt, sampler=sampler, steps=steps,
                                      guidance=guidance, guidance_scale=guidance_scale,
                                      plugin_params=parse_plugin_params(plugin_params), upsample=upsample,
                                      upsample_sampler=upsample_sampler, upsample_steps=upsample_steps,
                                      upsample_temp=upsample_temp, deep_cache=deep_cache,
                                      upsample_deep_cache=upsample_deep_cache, preset=preset or None)

    # New inputs go last, so that clients passing the earlier ones by position keep working.
    @user_errors
    def generate(prompt, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale, upsample,
                 upsample_steps, upsample_temp, plugin_params, model, upsample_sampler, deep_cache,
                 upsample_deep_cache, preset, request: gr.Request):
        """Text to image. Returns the final images: PNGs whose text chunks hold their settings."""
        req = request_of(prompt, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale,
                         upsample, upsample_steps, upsample_temp, plugin_params, model, upsample_sampler, deep_cache,
                         upsample_deep_cache, preset)
        out = answer(service.submit_generate(req, **caller(service, request)))
        return [(p, settings_summary(s)) for p, s in zip(out.images, out.settings)]

    generate_btn.click(generate, inputs=[prompt, negative, seed, batch, steps, sampler, guidance, scale, upsample,
                                         upsample_steps, upsample_temp, plugin_params, model, upsample_sampler,
                                         deep_cache, upsample_deep_cache, preset],
                       outputs=images, api_name="generate", **ctx.device_events)

    @user_errors
    def inpaint(prompt, image, mask, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale,
                upsample, upsample_steps, upsample_temp, plugin_params, model, upsample_sampler, deep_cache,
                upsample_deep_cache, preset, request: gr.Request):
        """Inpainting: white pixels of `mask` (or painted ones, in an RGBA mask's alpha) are replaced to match the prompt."""
        req = request_of(prompt, negative_prompt, seed, batch_size, steps, sampler, guidance, guidance_scale,
                         upsample, upsample_steps, upsample_temp, plugin_params, model, upsample_sampler, deep_cache,
                         upsample_deep_cache, preset)
        out = answer(service.submit_inpaint(req, image, mask, **caller(service, request)))
        return [(p, settings_summary(s)) for p, s in zip(out.images, out.settings)]

    inpaint_btn.click(inpaint, inputs=[prompt, image, mask, negative, seed, batch, steps, sampler, guidance, scale,
                                       upsample, upsample_steps, upsample_temp, plugin_params, model,
                                       upsample_sampler, deep_cache, upsample_deep_cache, preset],
                      outputs=images, api_name="inpaint", **ctx.device_events)

    @user_errors
    def compare(prompt, seed, steps, sampler, clip_scale, cfg_scale, upsample, sweep, model, strategies,
                request: gr.Request):
        """One prompt and seed under several guidance strategies (default CLIP, classifier-free, unguided):
        images, scores (the best marked), and a grid of the scale sweep."""
        req = ctx.service.compare_request(prompt, model=model, seed=seed, sampler=sampler, steps=steps,
                                          clip_scale=clip_scale, cfg_scale=cfg_scale, upsample=upsample,
                                          sweep=sweep, strategies=strategies)
        out = answer(service.submit_compare(req, **caller(service, request)))
        entries = [{k: v for k, v in e.items() if k not in ("image", "caption", "title")} for e in out.entries]
        return [(e["image"], e["caption"]) for e in out.entries], {"seed": out.seed, "entries": entries}, out.grid

    compare_btn.click(compare, inputs=[prompt, seed, steps, sampler, clip_scale, cfg_scale, compare_upsample, sweep,
                                       model, strategies],
                      outputs=[images, scores, grid], api_name="compare", **ctx.device_events)
