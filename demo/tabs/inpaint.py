"""The Inpainting tab: paint (or sketch) over an image, describe the region, successive edits."""
from typing import List, Tuple

import gradio as gr

from glide.data import shapes
from glide.declarations import DEFAULT_GUIDANCE
from glide.families import FAMILIES

from .. import imaging
from ..context import Context
from ..painter import mask_painter, painter_value, with_settings
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
)
from .presets import PresetPicker

# The Strength slider's initial value, chosen from `python -m glide.eval shapes --sketch` (EVAL_SKETCH.json):
# sketch editing at 0.8 reads as the caption in 93.8% of crude sketches (1.0: 98.4%) with the shape nearer the
# sketched blob (median 0.94 px against plain inpainting's 1.13).
SKETCH_STRENGTH = 0.8


class InpaintTab:
    """Paint the region to replace over an image; the masked input beside the result; successive edits."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    gr.Markdown("Paint over the region to replace (or drag a rectangle, or click a shape with "
                                "Fill), or sketch what goes there with the Colour brush; describe it and press "
                                "Inpaint. The model works on the square outlined on a picture that is not square; "
                                "its view shows the region it replaces in grey; the results are the whole picture.",
                                elem_classes="editor-help")
                    # Our own canvas (demo.painter): gradio's ImageEditor loses strokes after a new image.
                    self.painter = mask_painter(ctx.family.base_size, shapes.PALETTE, elem_id="painter")
                    self.strength = gr.Slider(**declared("strength", minimum=0.05, value=SKETCH_STRENGTH), step=0.05,
                                              elem_id="inpaint-strength")
                    self.grow = gr.Slider(0, 4, value=0, step=1, label="Grow the mask", elem_id="grow-mask",
                                          info="Model pixels added around the painted region (covers a shape's "
                                               "soft edge; the painter hatches them the other way); 0 = exactly "
                                               "as painted")
                    self.prompt, self.inpaint_btn, self.stop_btn = ctx.prompt_row(
                        "Prompt for the painted region", "Inpaint", "inpaint-prompt", "inpaint-btn", "inpaint-notice")
                with gr.Column(elem_classes="controls-more"):
                    # Text to image's controls, the same declarations (glide.declarations' inpaint settings).
                    with gr.Accordion("Settings", open=False, elem_id="inpaint-settings"):
                        self.negative = gr.Textbox(**declared("negative_prompt"), placeholder="optional",
                                                   elem_id="inpaint-negative")
                        self.presets = PresetPicker("inpaint-preset")
                        with gr.Row():
                            with gr.Column():
                                self.rules = PluginPanel("Step rule", ctx.rules, ctx.family.default_sampler)
                            with gr.Column():
                                self.guidance = PluginPanel("Guidance", ctx.strategies, DEFAULT_GUIDANCE,
                                                            guidance=True)
                        self.steps = ctx.steps_slider("inpaint-steps")
                        self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random"), precision=0)
                        self.batch = gr.Slider(**declared("batch_size", maximum=max(ctx.limits.max_batch, 2), value=1),
                                               step=1, visible=ctx.limits.max_batch > 1, elem_id="inpaint-batch")
                        self.upsample = gr.Checkbox(**declared("upsample"), elem_id="inpaint-upsample")
                        with gr.Row():
                            # 1 means off as 0 does (every step a full forward); the settings store it as 0.
                            self.deep_cache = gr.Slider(**declared("deep_cache"), step=1, elem_id="inpaint-deep-cache")
                            self.upsample_deep_cache = gr.Slider(**declared("upsample_deep_cache"), step=1,
                                                                 elem_id="inpaint-upsample-deep-cache")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="inpaint-status")
                # Shown while a job runs only: once the results are in, a preview would repeat one of them.
                self.preview = gr.Image(label="Live preview", interactive=False, height=200, format="png",
                                        visible=False)
                # Side by side on a wide screen; one above the other on a phone, where side by side their
                # labels would cover their buttons (short labels for the same reason).
                with gr.Row():
                    self.masked_view = gr.Image(label="Model's view (grey: new)", interactive=False,
                                                format="png", elem_id="masked-input", height=320, min_width=300)
                    self.result = gr.Gallery(label="Results", interactive=False, format="png",
                                             elem_id="inpaint-result", height=320, columns=2, object_fit="contain",
                                             min_width=300)
                self.again_btn = gr.Button("Use the result as the next input (the selected one; successive edits)",
                                           size="sm", elem_id="again-btn")
        self.result_paths = gr.State([])   # what the results gallery shows, in its order
        self.selected = gr.State(0)        # the result last clicked
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
                    batch_size=data[self.batch], negative_prompt=data[self.negative],
                    sampler=data[self.rules.dropdown], sampler_params=self.rules.params(data), steps=data[self.steps],
                    guidance=data[self.guidance.dropdown], guidance_params=self.guidance.params(data),
                    upsample=data[self.upsample], strength=data[self.strength], deep_cache=data[self.deep_cache],
                    upsample_deep_cache=data[self.upsample_deep_cache])
                job = service.submit_inpaint(req, image, mask, **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous result stays as it is
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            out = yield from run_with_preview(job, progress, self.status, self.preview)
            if out is None:
                return
            seeds = [s["seed"] for s in out.settings]
            # One result takes the gallery's width; a batch two a row.
            results = gr.update(value=gallery_items(out.images, out.settings), columns=min(len(out.images), 2))
            yield {self.masked_view: out.masked_input, self.result: results,
                   self.preview: hidden_preview(),
                   self.result_paths: out.images, self.selected: 0,
                   self.status: f"{len(out.images)} result(s) in {out.seconds:.1f} s · seed "
                                + ", ".join(map(str, seeds))}

        gr.on([self.inpaint_btn.click, self.prompt.submit], on_inpaint,
              inputs={self.painter, self.grow, self.strength, self.prompt, self.negative, ctx.model, self.seed,
                      self.batch, self.steps, self.upsample, self.deep_cache, self.upsample_deep_cache,
                      *self.rules.inputs, *self.guidance.inputs},
              outputs=[self.status, self.preview, self.masked_view, self.result, self.result_paths, self.selected],
              show_progress_on=self.result, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)

        def on_select(evt: gr.SelectData):
            return evt.index

        self.result.select(on_select, outputs=self.selected, queue=False, **PRIVATE)

        def on_again(paths, index, model):
            if not paths:
                gr.Warning("Run an inpainting first: its result becomes the next input.")
                return gr.skip()
            return self.painter_value(paths[min(index or 0, len(paths) - 1)], model)

        self.again_btn.click(on_again, inputs=[self.result_paths, self.selected, ctx.model], outputs=self.painter,
                             **PRIVATE)
        # The brush is sized in the chosen model's pixels; the page keeps the image and what is painted.
        ctx.model.change(lambda value, model: with_settings(value, base=FAMILIES[model].base_size),
                         inputs=[self.painter, ctx.model], outputs=self.painter, queue=False, **PRIVATE)
        # The painter shows what Grow the mask adds before anything runs.
        self.grow.change(lambda value, grow: with_settings(value, grow=int(grow)),
                         inputs=[self.painter, self.grow], outputs=self.painter, queue=False, **PRIVATE)

        self.presets.wire(ctx, "inpaint", {"steps": self.steps, "deep_cache": self.deep_cache,
                                           "upsample_deep_cache": self.upsample_deep_cache},
                          self.rules, self.guidance)

    def painter_value(self, path: str, model: str) -> dict:
        """An image (checked like an upload) as the painter's value, ready to paint on at once."""
        image = imaging.open_upload(path, "image", self.ctx.limits.max_image_side)
        return painter_value(image, FAMILIES[model].base_size)

    def follow_defaults(self) -> List[Tuple[gr.components.Component, str]]:
        return [(self.rules.dropdown, "sampler"), (self.steps, "steps")]
