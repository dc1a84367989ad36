"""The Text to image tab: prompt, plugins, seed, batch, upsampling, image to image; a gallery of results."""
from typing import TYPE_CHECKING, List, Tuple

import gradio as gr

from glide.declarations import DEFAULT_GUIDANCE
from glide.pngmeta import read_settings
from glide.settings import PRESETS, GenerationSettings

from .. import imaging
from ..context import Context
from ..service import UPSAMPLE_STEP_CHOICES
from ..widgets import (
    PRIVATE,
    USER_ERRORS,
    PluginPanel,
    caller,
    declared,
    gallery_items,
    refuse,
    run_job,
    stop_handler,
    user_errors,
)

if TYPE_CHECKING:   # for the annotation only: the tabs do not import each other
    from .inpaint import InpaintTab

DEFAULTS = "defaults"   # the preset choice that means none: the family's own defaults
# The Strength slider's initial value, chosen from `python -m glide.eval shapes --sketch` (EVAL_SKETCH.json):
# image to image at 0.6 keeps a render's scene and layout (100% read right, between 0.5's and 0.7's 3.7 and
# 4.7 levels from the render).
IMAGE_TO_IMAGE_STRENGTH = 0.6


class TextToImageTab:
    """Prompt, plugins and their parameters, seed, batch, upsampling; a gallery of final and base images."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        limits = ctx.limits
        # On narrow screens the results come right after the prompt and its buttons (CSS in demo.app).
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    self.prompt, self.generate_btn, self.stop_btn = ctx.prompt_row(
                        "Prompt", "Generate", "prompt", "generate-btn", "prompt-notice", stop_id="stop-btn")
                with gr.Column(elem_classes="controls-more"):
                    ctx.examples(self.prompt, "prompt-words")
                    self.negative = gr.Textbox(**declared("negative_prompt"), placeholder="optional")
                    self.preset = gr.Dropdown(
                        [("the model's defaults", DEFAULTS)] + [(name, name) for name in PRESETS], value=DEFAULTS,
                        label="Preset", elem_id="preset",
                        info="Sets the controls below; " + "; ".join(f"{name}: {p.description}"
                                                                   for name, p in PRESETS.items()))
                    with gr.Row():
                        with gr.Column():
                            self.rules = PluginPanel("Step rule", ctx.rules, ctx.family.default_sampler)
                        with gr.Column():
                            self.guidance = PluginPanel("Guidance", ctx.strategies, DEFAULT_GUIDANCE, guidance=True)
                    self.steps = ctx.steps_slider("steps")
                    with gr.Row():
                        self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random"), precision=0, scale=2)
                        with gr.Column(scale=1, min_width=160):
                            self.random_btn = gr.Button("Random seed", size="sm")
                            self.reuse_btn = gr.Button("Reuse last seed", size="sm")
                    self.batch = gr.Slider(**declared("batch_size", maximum=max(limits.max_batch, 2), value=1), step=1,
                                           visible=limits.max_batch > 1)
                    with gr.Row():
                        self.upsample = gr.Checkbox(**declared("upsample"), elem_id="upsample")
                        self.upsample_temp = gr.Slider(**declared("upsample_temp"), step=0.001)
                    with gr.Row():
                        self.upsample_rule = gr.Dropdown([r["name"] for r in ctx.rules],
                                                         **declared("upsample_sampler",
                                                                    value=ctx.family.default_upsample_sampler),
                                                         elem_id="upsample-rule")
                        self.upsample_steps = gr.Dropdown(UPSAMPLE_STEP_CHOICES,
                                                          **declared("upsample_steps",
                                                                     value=ctx.family.default_upsample_steps),
                                                          allow_custom_value=True, elem_id="upsample-steps")
                    with gr.Accordion("Start from an image (image to image)", open=False):
                        self.init_image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                                   label=declared("init_image")["label"] + " (optional)", height=160,
                                                   elem_id="init-image")
                        self.init_strength = gr.Slider(**declared("strength", minimum=0.05, value=IMAGE_TO_IMAGE_STRENGTH),
                                                       step=0.05, elem_id="init-strength")
                    with gr.Accordion("Speed: DeepCache", open=False):
                        with gr.Row():
                            # 1 means off as 0 does (every step a full forward); the settings store it as 0.
                            self.deep_cache = gr.Slider(**declared("deep_cache"), step=1, elem_id="deep-cache")
                            self.upsample_deep_cache = gr.Slider(**declared("upsample_deep_cache"), step=1,
                                                                 elem_id="upsample-deep-cache")
                    with gr.Accordion("Restore settings from an image", open=False):
                        # type="filepath" with image_mode=None hands over the uploaded file untouched, text chunks
                        # and all.
                        self.settings_drop = gr.Image(type="filepath", image_mode=None,
                                                      sources=["upload", "clipboard"],
                                                      label="Drop a PNG made here to restore its settings",
                                                      height=160, elem_id="settings-drop")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="status")
                self.preview = gr.Image(label="Live preview", interactive=False, height=256, elem_id="preview",
                                        format="png")
                # Final images only (a batch of 8 is 8 thumbnails); the base model's are below when upsampled.
                self.gallery = gr.Gallery(label="Images", columns=4, height="auto", format="png",
                                          elem_id="gallery", interactive=False)
                self.to_inpaint_btn = gr.Button("Edit the selected image in Inpainting", size="sm",
                                                elem_id="to-inpaint-btn")
                with gr.Accordion("Base images (before upsampling)", open=False, visible=False) as self.base_box:
                    self.base_gallery = gr.Gallery(show_label=False, columns=4, height="auto", format="png",
                                                   elem_id="base-gallery", interactive=False)
                with gr.Accordion("Settings of the first image", open=False):
                    self.settings_view = gr.JSON(label="Settings")
        self.last_seed = gr.State(None)
        self.result_paths = gr.State([])   # what the gallery shows, in its order
        self.selected = gr.State(0)        # the gallery item last clicked
        self._wire()

    def _wire(self):
        ctx, service = self.ctx, self.ctx.service

        @user_errors
        def on_generate(data, request: gr.Request, progress=gr.Progress()):
            try:
                # A starting image makes it image to image at the chosen strength; without one, text to image.
                start = {} if not data[self.init_image] else {
                    "init_image": service.open_image(data[self.init_image], "starting image"),
                    "strength": data[self.init_strength]}
                req = service.sample_request(
                    data[self.prompt], model=data[ctx.model], seed=data[self.seed], batch_size=data[self.batch],
                    negative_prompt=data[self.negative], sampler=data[self.rules.dropdown],
                    sampler_params=self.rules.params(data), steps=data[self.steps],
                    guidance=data[self.guidance.dropdown], guidance_params=self.guidance.params(data),
                    upsample=data[self.upsample], upsample_sampler=data[self.upsample_rule],
                    upsample_steps=data[self.upsample_steps], upsample_temp=data[self.upsample_temp],
                    deep_cache=data[self.deep_cache], upsample_deep_cache=data[self.upsample_deep_cache],
                    **start)
                job = service.submit_generate(req, start.get("init_image"), **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous results stay as they are
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            yield {self.status: "Queued…"}
            out = yield from run_job(job, progress, self.status, self.preview)
            if out is None:
                return
            first = out.settings[0]["seed"]
            seeds = f"{first}–{first + len(out.images) - 1}" if len(out.images) > 1 else f"{first}"
            upsampled = out.base_images != out.images
            yield {self.gallery: gallery_items(out.images, out.settings),
                   self.base_gallery: gallery_items(out.base_images, out.settings) if upsampled else None,
                   self.base_box: gr.update(visible=upsampled),
                   self.result_paths: out.images,
                   self.selected: 0, self.last_seed: first, self.settings_view: out.settings[0],
                   self.status: f"{len(out.images)} image(s) in {out.seconds:.1f} s · seed {seeds}"}

        # Inputs as a set: the handler gets {component: value}, which keeps the plugin controls generic.
        inputs = {self.init_image, self.init_strength,
                  self.prompt, self.negative, ctx.model, self.seed, self.batch, self.steps, self.upsample,
                  self.upsample_rule, self.upsample_steps, self.upsample_temp, self.deep_cache,
                  self.upsample_deep_cache, *self.rules.inputs, *self.guidance.inputs}
        # The progress bar covers the gallery, not the live preview it would hide.
        gr.on([self.generate_btn.click, self.prompt.submit], on_generate, inputs=inputs,
              outputs=[self.status, self.preview, self.gallery, self.base_gallery, self.base_box, self.result_paths,
                       self.selected, self.last_seed, self.settings_view],
              show_progress_on=self.gallery, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)
        self.random_btn.click(lambda: -1, outputs=self.seed, queue=False, **PRIVATE)

        def on_reuse(last):
            if last is None:
                gr.Warning("No image generated yet: there is no last seed to reuse.")
                return gr.skip()
            return last

        self.reuse_btn.click(on_reuse, inputs=self.last_seed, outputs=self.seed, queue=False, **PRIVATE)

        @user_errors
        def on_settings_drop(path):
            # gradio reads an empty dict as no update at all, which fails: say "no change" explicitly.
            if not path:   # the image was cleared
                return {self.status: gr.skip()}
            settings = read_settings(imaging.open_upload(path, "image", ctx.limits.max_image_side))
            if settings is None:
                gr.Warning("This image carries no GLIDE settings (only PNGs made by this demo or the CLI do).")
                return {self.status: gr.skip()}
            # The recorded settings go through the one validator, with this server's limits: what the
            # widgets show is exactly what Generate will run.
            made_by = settings.get("mode", "generate")
            restored = GenerationSettings.from_png(settings, mode="generate", limits=ctx.limits)
            # What this tab cannot set is said, rather than a "make it again" that would not.
            caveats = []
            if made_by != "generate":
                caveats.append(f"it was made by {made_by}, so Generate makes a new image from its prompt")
            if not isinstance(restored.steps, int):
                caveats.append(f"its base steps {restored.steps!r} are a schedule the slider cannot show")
            updates = {self.prompt: restored.prompts[0], self.negative: restored.negative_prompt,
                       self.seed: restored.seeds[0], self.batch: 1, self.upsample: restored.upsample,
                       self.upsample_temp: restored.upsample_temp, self.upsample_steps: str(restored.upsample_steps),
                       self.upsample_rule: restored.upsample_sampler, self.deep_cache: restored.deep_cache,
                       self.upsample_deep_cache: restored.upsample_deep_cache, ctx.model: restored.model,
                       self.status: f"Restored the settings of seed {restored.seeds[0]} ({restored.model}): "
                                    + ("; ".join(caveats) + "." if caveats else "press Generate to make it again.")}
            if isinstance(restored.steps, int):
                updates[self.steps] = restored.steps
            updates.update(self.rules.restore(restored.sampler, restored.sampler_params))
            updates.update(self.guidance.restore(restored.guidance, restored.guidance_params))
            return updates

        self.settings_drop.upload(
            on_settings_drop, inputs=self.settings_drop,
            outputs=[self.prompt, self.negative, self.seed, self.batch, self.steps, self.upsample, self.upsample_temp,
                     self.upsample_rule, self.upsample_steps, self.deep_cache, self.upsample_deep_cache, ctx.model,
                     self.status, self.rules.dropdown,
                     self.guidance.dropdown, *self.rules.widgets, *self.guidance.widgets], **PRIVATE)

        @user_errors
        def on_preset(name, model, guidance):
            # The preset goes through the one validator like a request would, so the controls show exactly what
            # Generate runs; of the guidance's parameters only those a preset sets change (the scale stays).
            chosen = GenerationSettings.create("preset", model=model, guidance=guidance, seed=0, limits=ctx.limits,
                                               preset=None if name == DEFAULTS else name)
            preset_params = {k for p in PRESETS.values() for k in p.plugin_params}
            updates = {self.upsample_rule: chosen.upsample_sampler, self.upsample_steps: str(chosen.upsample_steps),
                       self.deep_cache: chosen.deep_cache, self.upsample_deep_cache: chosen.upsample_deep_cache}
            if isinstance(chosen.steps, int):
                updates[self.steps] = chosen.steps
            updates.update(self.rules.restore(chosen.sampler, chosen.sampler_params))
            updates.update(self.guidance.restore(chosen.guidance, {k: v for k, v in chosen.guidance_params.items()
                                                                   if k in preset_params}))
            return updates

        self.preset.input(on_preset, inputs=[self.preset, ctx.model, self.guidance.dropdown],
                          outputs=[self.steps, self.upsample_rule, self.upsample_steps, self.deep_cache,
                                   self.upsample_deep_cache, self.rules.dropdown,
                                   *self.rules.widgets, self.guidance.dropdown, *self.guidance.widgets],
                          queue=False, **PRIVATE)

        def on_select(evt: gr.SelectData):
            return evt.index

        self.gallery.select(on_select, outputs=self.selected, queue=False, **PRIVATE)

    def follow_defaults(self) -> List[Tuple[gr.components.Component, str]]:
        return [(self.rules.dropdown, "sampler"), (self.steps, "steps"), (self.upsample_rule, "upsample_sampler"),
                (self.upsample_steps, "upsample_steps")]

    def send_to(self, inpaint: "InpaintTab", tabs: gr.Tabs):
        """One click puts the selected image, and the prompt, into the inpainting tab and opens it."""

        def on_send(paths, index, text, model):
            if not paths:
                gr.Warning("Generate an image first, then select it in the gallery.")
                return gr.skip(), gr.skip(), gr.skip()
            path = paths[min(index or 0, len(paths) - 1)]
            return inpaint.painter_value(path, model), text, gr.Tabs(selected="inpaint")

        self.to_inpaint_btn.click(on_send, inputs=[self.result_paths, self.selected, self.prompt, self.ctx.model],
                                  outputs=[inpaint.painter, inpaint.prompt, tabs], **PRIVATE)
