"""The demo's tabs and its model picker; each class lays out its widgets and wires its own events.

Handlers only turn widget values into requests for demo.service and show what comes back.
Sampling events are generators: they stream the queue position, a progress bar per stage and
live x0 previews, and end with the images (see widgets.run_job).
"""
from typing import List, Tuple

import gradio as gr

from glide.data import shapes
from glide.declarations import DEFAULT_GUIDANCE
from glide.evaluation import measures
from glide.families import FAMILIES
from glide.pngmeta import read_settings
from glide.settings import COMPARE_STRATEGIES, PRESETS, GenerationSettings

from . import imaging
from .context import EXAMPLES, Context
from .models import APPROX_BYTES, human_bytes, model_label
from .painter import mask_painter, painter_value, with_base
from .service import UPSAMPLE_STEP_CHOICES, DemoService
from .widgets import (
    PRIVATE,
    SCALE_HELP,
    USER_ERRORS,
    PluginPanel,
    caller,
    declared,
    gallery_items,
    model_description,
    refuse,
    run_job,
    stop_handler,
    user_errors,
)

DEFAULTS = "defaults"   # the preset choice that means none: the family's own defaults
# The Strength sliders' initial values, chosen from `python -m glide.eval shapes --sketch` (EVAL_SKETCH.json):
# sketch editing at 0.8 reads as the caption in 93.8% of crude sketches (1.0: 98.4%) with the shape nearer the
# sketched blob (median 0.94 px against plain inpainting's 1.13); image to image at 0.6 keeps a render's scene
# and layout (100% read right, between 0.5's and 0.7's 3.7 and 4.7 levels from the render).
SKETCH_STRENGTH = 0.8
IMAGE_TO_IMAGE_STRENGTH = 0.6

class ModelPicker:
    """The model dropdown (shared by the tabs), its description, and a background download with progress."""

    def __init__(self, service: DemoService):
        self.service = service
        with gr.Row(equal_height=True, elem_classes="model-row"):
            self.model = gr.Dropdown(self.choices(), value=service.default_model, label="Model", scale=2,
                                     info="Shared by everyone on this server; loaded once.", elem_id="model")
            self.info = gr.Markdown(model_description(service.default_model))
            self.download_btn = gr.Button("Download", visible=False, scale=0, min_width=160, elem_id="download-btn")
        self.download_status = gr.Markdown("")
        self.timer = gr.Timer(1.0, active=False)  # polls the download's progress while one runs

    def choices(self):
        return [(model_label(row), name) for name, row in self.service.models().items()]

    def sampling_defaults(self, name: str) -> dict:
        """A model's sampling defaults, by the keys tabs name their controls with (see `wire`)."""
        family = FAMILIES[name]
        return {"steps": self.service.default_steps(name), "sampler": family.default_sampler,
                "upsample_sampler": family.default_upsample_sampler,
                "upsample_steps": str(family.default_upsample_steps)}

    def wire(self, demo: gr.Blocks, follow_defaults: List[Tuple[gr.components.Component, str]]):
        """Events. Choosing a model sets each (control, key) of `follow_defaults` to that model's default
        (`sampling_defaults`): its fastest settings measured as good as slow ones. Only a user's choice
        does, not a model restored from a PNG's settings along with the settings themselves."""
        service = self.service

        def on_model(name):
            row = service.models().get(name)
            ready = bool(row) and all(c["ready"] for c in row["components"].values())
            size = f" ≈{human_bytes(APPROX_BYTES[name])}" if name in APPROX_BYTES else ""
            return (model_description(name),
                    gr.update(visible=not ready and name in APPROX_BYTES, value=f"Download{size}"),
                    service.downloads.describe(name))

        self.model.change(on_model, inputs=self.model, outputs=[self.info, self.download_btn, self.download_status],
                          queue=False, **PRIVATE)

        def on_model_chosen(name):
            defaults = self.sampling_defaults(name)
            return [defaults[key] for _, key in follow_defaults]

        self.model.input(on_model_chosen, inputs=self.model, outputs=[c for c, _ in follow_defaults],
                         queue=False, **PRIVATE)

        @user_errors
        def on_download(name):
            service.downloads.start(name)  # a background thread: nobody's requests wait for it
            return service.downloads.describe(name), gr.Timer(active=True)

        self.download_btn.click(on_download, inputs=self.model, outputs=[self.download_status, self.timer],
                                queue=False, **PRIVATE)

        def on_tick(name):
            state = service.downloads.status(name)["state"]
            return (service.downloads.describe(name), gr.Timer(active=state == "running"),
                    gr.update(choices=self.choices()), gr.update(visible=state in ("idle", "error")))

        self.timer.tick(on_tick, inputs=self.model,
                        outputs=[self.download_status, self.timer, self.model, self.download_btn],
                        queue=False, **PRIVATE)
        # Readiness can change while the server runs (a download, `make train-default`): refresh on load.
        demo.load(lambda: gr.update(choices=self.choices()), outputs=self.model, queue=False, **PRIVATE)


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


class InpaintTab:
    """Paint the region to replace over an image; the masked input beside the result; successive edits."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    gr.Markdown("Paint over the region to replace (or drag a rectangle, or click a shape with "
                                "Fill), or sketch what goes there with the Colour brush; describe it and press "
                                "Inpaint.", elem_classes="editor-help")
                    # Our own canvas (demo.painter): gradio's ImageEditor loses strokes after a new image.
                    self.painter = mask_painter(ctx.family.base_size, shapes.PALETTE, elem_id="painter")
                    self.strength = gr.Slider(**declared("strength", minimum=0.05, value=SKETCH_STRENGTH), step=0.05,
                                              elem_id="inpaint-strength")
                    self.grow = gr.Slider(0, 4, value=0, step=1, label="Grow the mask", elem_id="grow-mask",
                                          info="Model pixels added around the painted region (covers a shape's "
                                               "soft edge); 0 = exactly as painted")
                    self.prompt, self.inpaint_btn, self.stop_btn = ctx.prompt_row(
                        "Prompt for the painted region", "Inpaint", "inpaint-prompt", "inpaint-btn", "inpaint-notice")
                with gr.Column(elem_classes="controls-more"):
                    with gr.Accordion("Settings", open=False, elem_id="inpaint-settings"):
                        with gr.Row():
                            with gr.Column():
                                self.rules = PluginPanel("Step rule", ctx.rules, ctx.family.default_sampler)
                            with gr.Column():
                                self.guidance = PluginPanel("Guidance", ctx.strategies, DEFAULT_GUIDANCE,
                                                            guidance=True)
                        self.steps = ctx.steps_slider("inpaint-steps")
                        self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random"), precision=0)
                        self.upsample = gr.Checkbox(**declared("upsample"), elem_id="inpaint-upsample")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="inpaint-status")
                self.preview = gr.Image(label="Live preview", interactive=False, height=200, format="png")
                with gr.Row():
                    self.masked_view = gr.Image(label="Input (region to replace greyed)", interactive=False,
                                                format="png", elem_id="masked-input", height=320)
                    self.result = gr.Image(label="Result", interactive=False, format="png", elem_id="inpaint-result",
                                           height=320)
                self.again_btn = gr.Button("Use the result as the next input (successive edits)", size="sm",
                                           elem_id="again-btn")
        self.result_path = gr.State(None)
        self._wire()

    def _wire(self):
        ctx, service = self.ctx, self.ctx.service

        @user_errors
        def on_inpaint(data, request: gr.Request, progress=gr.Progress()):
            try:
                image, mask = imaging.painting_to_image_and_mask(data[self.painter], ctx.limits.max_image_side)
                mask = imaging.grow_mask(mask, int(data[self.grow]), FAMILIES[data[ctx.model]].base_size)
                req = service.sample_request(
                    data[self.prompt], mode="inpaint", model=data[ctx.model], seed=data[self.seed],
                    sampler=data[self.rules.dropdown],
                    sampler_params=self.rules.params(data), steps=data[self.steps],
                    guidance=data[self.guidance.dropdown], guidance_params=self.guidance.params(data),
                    upsample=data[self.upsample], strength=data[self.strength])
                job = service.submit_inpaint(req, image, mask, **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous result stays as it is
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            yield {self.status: "Queued…"}
            out = yield from run_job(job, progress, self.status, self.preview)
            if out is None:
                return
            yield {self.masked_view: out.masked_input, self.result: out.images[0], self.result_path: out.images[0],
                   self.status: f"Done in {out.seconds:.1f} s · seed {out.settings[0]['seed']}"}

        gr.on([self.inpaint_btn.click, self.prompt.submit], on_inpaint,
              inputs={self.painter, self.grow, self.strength, self.prompt, ctx.model, self.seed, self.steps,
                      self.upsample,
                      *self.rules.inputs, *self.guidance.inputs},
              outputs=[self.status, self.preview, self.masked_view, self.result, self.result_path],
              show_progress_on=self.result, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)

        def on_again(path, model):
            if not path:
                gr.Warning("Run an inpainting first: its result becomes the next input.")
                return gr.skip()
            return self.painter_value(path, model)

        self.again_btn.click(on_again, inputs=[self.result_path, ctx.model], outputs=self.painter, **PRIVATE)
        # The brush is sized in the chosen model's pixels; the page keeps the image and what is painted.
        ctx.model.change(lambda value, model: with_base(value, FAMILIES[model].base_size),
                         inputs=[self.painter, ctx.model], outputs=self.painter, queue=False, **PRIVATE)

    def painter_value(self, path: str, model: str) -> dict:
        """An image (checked like an upload) as the painter's value, ready to paint on at once."""
        image = imaging.open_upload(path, "image", self.ctx.limits.max_image_side)
        return painter_value(image, FAMILIES[model].base_size)

    def follow_defaults(self) -> List[Tuple[gr.components.Component, str]]:
        return [(self.rules.dropdown, "sampler"), (self.steps, "steps")]


SCORE_HEADERS = ["", "guidance", "scale", "CLIP score", "checker", "seconds"]
SCORES_HELP = (
    "<small>**CLIP score**: how close the image is to the prompt for the noised CLIP at t = 0 (the cosine "
    "similarity of their embeddings, −1 to 1; higher = closer; CLIP guidance steers by this same score, which "
    "flatters it). **Checker** (shapes model): does the image show the colours, shapes, sizes and positions the "
    "prompt names. **★ best**: passes the checker, then the highest CLIP score.</small>")


def score_rows(entries: List[dict]) -> List[list]:
    """The scores table from the comparison's rows (glide.comparison.score_rows): fixed decimals, the best
    row marked."""
    return [["★ best" if e.get("best") else "", e["title"],
             "—" if e.get("scale") is None else f"{e['scale']:g}",
             "—" if e.get("clip_score") is None else f"{e['clip_score']:.3f}",
             e.get("verdict") or "—", f"{e['seconds']:.1f} s"]
            for e in entries]


def tradeoff_view(model_name: str, clip_scale: float, cfg_scale: float):
    """The family's measured guidance trade-off with the chosen scales marked, and a line saying what it is."""
    report = measures.load_tradeoff(FAMILIES[model_name])
    if report is None:
        return None, (f"<small>No trade-off measurement for {model_name}: only the shapes family's guidance can be "
                      f"judged by a program (`python -m glide.eval shapes --tradeoff`).</small>")
    marks = [("classifier-free", cfg_scale, f"your {cfg_scale:g}"), ("clip", clip_scale, f"your {clip_scale:g}")]
    figure = measures.tradeoff_figure(report, marks)
    return figure, (f"<small>**This family's measured guidance trade-off** (fidelity against diversity and realism, "
                    f"one curve per guidance): {report['prompts']} two-shape prompts x {report['seeds']} seeds per point "
                    f"({report['date']}, `{report['command']}`): each point a guidance scale, ★ your scales "
                    f"(between measured points, interpolated). Up is more scenes fully right; right on the left "
                    f"plot is more varied layouts (1 = as varied as the training data); left on the right plot "
                    f"is closer to a clean render.</small>")


class CompareTab:
    """One prompt and seed under CLIP guidance, classifier-free guidance and none; scores; a scale sweep;
    the family's measured trade-off with the chosen scales marked."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    self.prompt, self.compare_btn, self.stop_btn = ctx.prompt_row(
                        "Prompt", "Compare", "compare-prompt", "compare-btn", "compare-notice", value=EXAMPLES[0])
                with gr.Column(elem_classes="controls-more"):
                    ctx.examples(self.prompt, "compare-words")
                    names = [g["name"] for g in ctx.strategies]
                    self.strategies = gr.CheckboxGroup(
                        names, value=[n for n in COMPARE_STRATEGIES if n in names], label="Guidance strategies",
                        info="Any installed strategy, each at its default scale (CLIP and classifier-free: the "
                             "sliders below)", elem_id="compare-strategies")
                    self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random; one seed for all"),
                                          precision=0)
                    with gr.Row():
                        self.rule = gr.Dropdown([r["name"] for r in ctx.rules], value=ctx.family.default_sampler,
                                                label="Step rule")
                        self.steps = ctx.steps_slider("compare-steps")
                    self.clip_scale = gr.Slider(0, 100, value=ctx.default_scale("clip"), step=0.5,
                                                label="CLIP guidance scale", elem_id="compare-clip-scale",
                                                info=SCALE_HELP["clip"])
                    self.cfg_scale = gr.Slider(0, 20, value=ctx.default_scale("classifier-free"), step=0.1,
                                               label="Classifier-free guidance scale", elem_id="compare-cfg-scale",
                                               info=SCALE_HELP["classifier-free"])
                    self.upsample = gr.Checkbox(False, label="Upsample (slower)")
                    self.sweep = gr.Textbox(label="Sweep scales (optional)", placeholder="e.g. 1, 3, 5, 8",
                                            elem_id="compare-sweep",
                                            info=f"Samples every chosen strategy that has a scale at each "
                                                 f"scale (at most {ctx.limits.max_sweep}) into a grid")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="compare-status")
                self.preview = gr.Image(label="Live preview", interactive=False, height=160, format="png")
                self.gallery = gr.Gallery(label="Same prompt, same seed", columns=3, height="auto", format="png",
                                          elem_id="compare-gallery", interactive=False)
                self.sweep_view = gr.Image(label="Sweep", interactive=False, format="png", visible=False,
                                           elem_id="sweep")
                self.table = gr.Dataframe(headers=SCORE_HEADERS, label="Scores", interactive=False, wrap=True,
                                          elem_id="scores")
                gr.Markdown(SCORES_HELP, elem_id="scores-help")
                figure, note = tradeoff_view(ctx.service.default_model, self.clip_scale.value, self.cfg_scale.value)
                # The label would be drawn over the figure's title: the note under the plot names it instead.
                self.tradeoff = gr.Plot(figure, show_label=False, elem_id="tradeoff", format="png")
                self.tradeoff_note = gr.Markdown(note, elem_id="tradeoff-note")
        self._wire()

    def _wire(self):
        ctx, service = self.ctx, self.ctx.service

        @user_errors
        def on_compare(text, model_name, seed, rule, steps, clip_scale, cfg_scale, upsample, sweep, strategies,
                       request: gr.Request, progress=gr.Progress()):
            try:
                req = service.compare_request(text, model=model_name, seed=seed, sampler=rule, steps=steps,
                                              clip_scale=clip_scale, cfg_scale=cfg_scale, upsample=upsample,
                                              sweep=sweep, strategies=strategies or None)
                job = service.submit_compare(req, **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous results stay as they are
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            yield {self.status: "Queued…"}
            out = yield from run_job(job, progress, self.status, self.preview)
            if out is None:
                return
            yield {self.gallery: [(e["image"], e["caption"]) for e in out.entries],
                   self.table: score_rows(out.entries),
                   self.sweep_view: gr.update(value=out.grid, visible=out.grid is not None),
                   self.status: f"Seed {out.seed}: same prompt and seed, {len(out.entries)} kinds of guidance."}

        gr.on([self.compare_btn.click, self.prompt.submit], on_compare,
              inputs=[self.prompt, ctx.model, self.seed, self.rule, self.steps, self.clip_scale, self.cfg_scale,
                      self.upsample, self.sweep, self.strategies],
              outputs=[self.status, self.preview, self.gallery, self.table, self.sweep_view],
              show_progress_on=self.gallery, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)
        gr.on([ctx.model.change, self.clip_scale.change, self.cfg_scale.change], tradeoff_view,
              inputs=[ctx.model, self.clip_scale, self.cfg_scale], outputs=[self.tradeoff, self.tradeoff_note],
              trigger_mode="always_last", queue=False, **PRIVATE)

    def follow_defaults(self) -> List[Tuple[gr.components.Component, str]]:
        return [(self.rule, "sampler"), (self.steps, "steps")]
