"""The Text to image tab: prompt, plugins, seed, batch, upsampling, image to image; a gallery of results and
this session's history."""
from typing import TYPE_CHECKING, Dict, List, Tuple

import gradio as gr

from glide.declarations import DEFAULT_GUIDANCE
from glide.pngmeta import read_settings
from glide.settings import GenerationSettings, Limits, ignored_negative_prompt

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
    hidden_preview,
    refuse,
    run_with_preview,
    stop_handler,
    user_errors,
    warn,
)
from .history import History, history_items, with_results
from .presets import CUSTOM, PresetPicker, preset_info

if TYPE_CHECKING:   # for the annotation only: the tabs do not import each other
    from .inpaint import InpaintTab
    from .upscale import UpscaleTab

# The Strength slider's initial value, chosen from `python -m glide.eval shapes --sketch` (EVAL_SKETCH.json):
# image to image at 0.6 keeps a render's scene and layout (100% read right, between 0.5's and 0.7's 3.7 and
# 4.7 levels from the render).
IMAGE_TO_IMAGE_STRENGTH = 0.6


def negative_notice(negative: str, guidance: str) -> str:
    """Under the negative prompt: a notice when the chosen guidance ignores it (glide.settings)."""
    ignored = ignored_negative_prompt(negative, guidance)
    return f"⚠️ {ignored[:1].upper() + ignored[1:]}." if ignored else ""


def restore_settings(saved: Dict, limits: Limits) -> Tuple[GenerationSettings, str]:
    """A PNG's (or a history entry's) recorded settings as this tab's settings, through the one validator with this
    server's limits, and the status line saying what was restored and what this tab cannot set."""
    made_by = saved.get("mode", "generate")
    restored = GenerationSettings.from_png(saved, mode="generate", limits=limits)
    # What this tab cannot set is said, rather than a "make it again" that would not.
    caveats = []
    if made_by != "generate":
        caveats.append(f"it was made by {made_by}, so Generate makes a new image from its prompt")
    if not isinstance(restored.steps, int):
        caveats.append(f"its base steps {restored.steps!r} are a schedule the slider cannot show")
    status = (f"Restored the settings of seed {restored.seeds[0]} ({restored.model}): "
              + ("; ".join(caveats) + "." if caveats else "press Generate to make it again."))
    return restored, status


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
                    # Right under the prompt, where the page's header says it is (at every width).
                    with gr.Accordion("Restore settings from an image", open=False, elem_id="settings-drop-box"):
                        # type="filepath" with image_mode=None hands over the uploaded file untouched, text chunks
                        # and all.
                        self.settings_drop = gr.Image(type="filepath", image_mode=None,
                                                      sources=["upload", "clipboard"],
                                                      label="Drop a PNG made here to restore its settings",
                                                      height=160, elem_id="settings-drop")
                with gr.Column(elem_classes="controls-more"):
                    ctx.examples(self.prompt, "prompt-words")
                    self.negative = gr.Textbox(**declared("negative_prompt"), placeholder="optional",
                                               elem_id="negative")
                    self.negative_notice = gr.Markdown("", elem_id="negative-notice", elem_classes="grammar-notice")
                    self.presets = PresetPicker("preset")
                    self.preset = self.presets.dropdown
                    with gr.Row():
                        with gr.Column():
                            self.rules = PluginPanel("Step rule", ctx.rules, ctx.family.default_sampler)
                        with gr.Column():
                            self.guidance = PluginPanel("Guidance", ctx.strategies, DEFAULT_GUIDANCE, guidance=True)
                    self.steps = ctx.steps_slider("steps")
                    with gr.Row():
                        self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random"), precision=0, scale=2,
                                             elem_id="seed")
                        with gr.Column(scale=1, min_width=160):
                            self.random_btn = gr.Button("Random seed", size="sm")
                            self.reuse_btn = gr.Button("Reuse last seed", size="sm")
                    self.batch = gr.Slider(**declared("batch_size", maximum=max(limits.max_batch, 2), value=1), step=1,
                                           visible=limits.max_batch > 1, elem_id="batch")
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
                        # One above the other: side by side their labels and help are squeezed into two lines each.
                        # 1 means off as 0 does (every step a full forward); the settings store it as 0.
                        self.deep_cache = gr.Slider(**declared("deep_cache"), step=1, elem_id="deep-cache")
                        self.upsample_deep_cache = gr.Slider(**declared("upsample_deep_cache"), step=1,
                                                             elem_id="upsample-deep-cache")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="status")
                # Shown while a job runs only: once its images are in the gallery a preview would repeat them.
                self.preview = gr.Image(label="Live preview", interactive=False, height=256, elem_id="preview",
                                        format="png", visible=False)
                # Final images only (a batch of 8 is 8 thumbnails); the base model's are below when upsampled.
                self.gallery = gr.Gallery(label="Images", columns=4, height="auto", format="png",
                                          elem_id="gallery", interactive=False)
                with gr.Row():
                    self.to_inpaint_btn = gr.Button("Edit the selected image in Inpainting", size="sm",
                                                    elem_id="to-inpaint-btn")
                    self.to_upscale_btn = gr.Button("Upscale the selected image", size="sm", elem_id="to-upscale-btn")
                with gr.Accordion("Base images (before upsampling)", open=False, visible=False) as self.base_box:
                    self.base_gallery = gr.Gallery(show_label=False, columns=4, height="auto", format="png",
                                                   elem_id="base-gallery", interactive=False)
                with gr.Accordion("Settings of the selected image", open=False):
                    self.settings_view = gr.JSON(label="Settings", elem_id="settings-view")
                self.history = History()
        self.last_seed = gr.State(None)
        self.result_paths = gr.State([])     # what the gallery shows, in its order
        self.base_paths = gr.State([])       # the base model's image of each
        self.result_settings = gr.State([])  # the settings of each, in the same order
        self.selected = gr.State(0)          # the gallery item last clicked
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
            ignored = ignored_negative_prompt(data[self.negative], data[self.guidance.dropdown])
            if ignored:
                warn(ignored[:1].upper() + ignored[1:] + ".")
            out = yield from run_with_preview(job, progress, self.status, self.preview)
            if out is None:
                return
            first = out.settings[0]["seed"]
            seeds = f"{first}–{first + len(out.images) - 1}" if len(out.images) > 1 else f"{first}"
            upsampled = out.base_images != out.images
            entries = with_results(data[self.history.entries], out.images, out.settings)
            # The first image opens large (what `selected` and the settings shown say), its batch below it.
            yield {self.gallery: gr.Gallery(gallery_items(out.images, out.settings), selected_index=0),
                   self.preview: hidden_preview(),
                   self.base_gallery: gallery_items(out.base_images, out.settings) if upsampled else None,
                   self.base_box: gr.update(visible=upsampled),
                   self.result_paths: out.images, self.base_paths: out.base_images,
                   self.result_settings: out.settings,
                   self.selected: 0, self.last_seed: first, self.settings_view: out.settings[0],
                   self.history.entries: entries, self.history.gallery: history_items(entries),
                   self.status: f"{len(out.images)} image(s) in {out.seconds:.1f} s · seed {seeds}"}

        # Inputs as a set: the handler gets {component: value}, which keeps the plugin controls generic.
        inputs = {self.init_image, self.init_strength,
                  self.prompt, self.negative, ctx.model, self.seed, self.batch, self.steps, self.upsample,
                  self.upsample_rule, self.upsample_steps, self.upsample_temp, self.deep_cache,
                  self.upsample_deep_cache, self.history.entries, *self.rules.inputs, *self.guidance.inputs}
        # The progress bar covers the gallery, not the live preview it would hide.
        gr.on([self.generate_btn.click, self.prompt.submit], on_generate, inputs=inputs,
              outputs=[self.status, self.preview, self.gallery, self.base_gallery, self.base_box, self.result_paths,
                       self.base_paths,
                       self.result_settings, self.selected, self.last_seed, self.settings_view, self.history.entries,
                       self.history.gallery],
              show_progress_on=self.gallery, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)
        self.random_btn.click(lambda: -1, outputs=self.seed, queue=False, **PRIVATE)

        def on_reuse(last):
            if last is None:
                warn("No image generated yet: there is no last seed to reuse.")
                return gr.skip()
            return last

        self.reuse_btn.click(on_reuse, inputs=self.last_seed, outputs=self.seed, queue=False, **PRIVATE)

        def restore(saved: Dict) -> dict:
            """Updates that set the controls to recorded settings (what Generate will then run exactly)."""
            restored, status = restore_settings(saved, ctx.limits)
            updates = {self.prompt: restored.prompts[0], self.negative: restored.negative_prompt,
                       self.seed: restored.seeds[0], self.batch: 1, self.upsample: restored.upsample,
                       self.upsample_temp: restored.upsample_temp, self.upsample_steps: str(restored.upsample_steps),
                       self.upsample_rule: restored.upsample_sampler, self.deep_cache: restored.deep_cache,
                       self.upsample_deep_cache: restored.upsample_deep_cache, ctx.model: restored.model,
                       self.preset: gr.update(value=CUSTOM, info=preset_info(CUSTOM)), self.status: status}
            if isinstance(restored.steps, int):
                updates[self.steps] = restored.steps
            updates.update(self.rules.restore(restored.sampler, restored.sampler_params))
            updates.update(self.guidance.restore(restored.guidance, restored.guidance_params))
            return updates

        restored_outputs = [self.prompt, self.negative, self.seed, self.batch, self.steps, self.upsample,
                            self.upsample_temp, self.upsample_rule, self.upsample_steps, self.deep_cache,
                            self.upsample_deep_cache, ctx.model, self.preset, self.status, self.rules.dropdown,
                            self.guidance.dropdown, *self.rules.widgets, *self.guidance.widgets]

        @user_errors
        def on_settings_drop(path):
            # gradio reads an empty dict as no update at all, which fails: say "no change" explicitly.
            if not path:   # the image was cleared
                return {self.status: gr.skip()}
            settings = read_settings(imaging.open_upload(path, "image", ctx.limits.max_image_side))
            if settings is None:
                warn("This image carries no GLIDE settings (only PNGs made by this demo or the CLI do).")
                return {self.status: gr.skip()}
            return restore(settings)

        self.settings_drop.upload(on_settings_drop, inputs=self.settings_drop, outputs=restored_outputs, **PRIVATE)

        @user_errors
        def on_history(entries, evt: gr.SelectData):
            return restore(entries[evt.index]["settings"])

        self.history.gallery.select(on_history, inputs=self.history.entries, outputs=restored_outputs,
                                    queue=False, **PRIVATE)

        self.presets.wire(ctx, "generate", {"steps": self.steps, "upsample_sampler": self.upsample_rule,
                                            "upsample_steps": self.upsample_steps, "deep_cache": self.deep_cache,
                                            "upsample_deep_cache": self.upsample_deep_cache},
                          self.rules, self.guidance)
        gr.on([self.negative.change, self.guidance.dropdown.change], negative_notice,
              inputs=[self.negative, self.guidance.dropdown], outputs=self.negative_notice, queue=False,
              show_progress="hidden", **PRIVATE)

        def on_select(settings, evt: gr.SelectData):
            return evt.index, settings[evt.index] if evt.index < len(settings) else gr.skip()

        self.gallery.select(on_select, inputs=self.result_settings, outputs=[self.selected, self.settings_view],
                            queue=False, **PRIVATE)

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

    def send_to_upscale(self, upscale: "UpscaleTab", tabs: gr.Tabs):
        """One click puts the selected image's base image (what the upsampler takes), its prompt and its upsampler
        settings into the Upscale tab and opens it."""

        def on_send(paths, settings, index):
            if not paths:
                warn("Generate an image first, then select it in the gallery.")
                return [gr.skip()] * 8
            index = min(index or 0, len(paths) - 1)
            made = settings[index]
            return (paths[index], made["prompt"], made["upsample_sampler"], str(made["upsample_steps"]),
                    made["upsample_temp"], made["upsample_deep_cache"], made["seed"], gr.Tabs(selected="upscale"))

        self.to_upscale_btn.click(on_send, inputs=[self.base_paths, self.result_settings, self.selected],
                                  outputs=[upscale.image, upscale.prompt, upscale.rule, upscale.steps, upscale.temp,
                                           upscale.deep_cache, upscale.seed, tabs], **PRIVATE)
