"""The Upscale tab: an uploaded image and its description through the model's upsampler (`glide upsample`)."""
import gradio as gr

from glide.families import FAMILIES

from ..context import Context
from ..service import UPSAMPLE_STEP_CHOICES
from ..widgets import (
    PRIVATE,
    USER_ERRORS,
    caller,
    declared,
    refuse,
    run_job,
    stop_handler,
    user_errors,
)


def upscale_help(model: str) -> str:
    """What the upsampler does to an upload, in the chosen model's sizes."""
    family = FAMILIES[model]
    factor = family.upsample_size // family.base_size
    return (f"The {family.name} upsampler makes a {family.upsample_size}×{family.upsample_size} image "
            f"({factor}× larger) from a {family.base_size}×{family.base_size} one: a larger or non-square upload "
            "is centre-cropped and resized to that first. Describe the picture: the upsampler follows the prompt.")


class UpscaleTab:
    """An image and a prompt in, the upsampler's image out, with its step rule, steps, temperature and seed."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    self.help = gr.Markdown(upscale_help(ctx.service.default_model), elem_id="upscale-help")
                    self.image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                          label="Image to upscale", height=200, elem_id="upscale-input")
                    self.prompt, self.upscale_btn, self.stop_btn = ctx.prompt_row(
                        "What the image shows", "Upscale", "upscale-prompt", "upscale-btn", "upscale-notice")
                with gr.Column(elem_classes="controls-more"):
                    with gr.Row():
                        self.rule = gr.Dropdown([r["name"] for r in ctx.rules],
                                                **declared("upsample_sampler", value=ctx.family.default_upsample_sampler),
                                                elem_id="upscale-rule")
                        self.steps = gr.Dropdown(UPSAMPLE_STEP_CHOICES,
                                                 **declared("upsample_steps", value=ctx.family.default_upsample_steps),
                                                 allow_custom_value=True, elem_id="upscale-steps")
                    self.temp = gr.Slider(**declared("upsample_temp"), step=0.001)
                    self.deep_cache = gr.Slider(**declared("upsample_deep_cache"), step=1, elem_id="upscale-deep-cache")
                    self.seed = gr.Number(**declared("seed", value=-1, info="-1 = random"), precision=0)
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="upscale-status")
                self.result = gr.Image(label="Upscaled", interactive=False, format="png", type="filepath",
                                       elem_id="upscale-result")
        self._wire()

    def _wire(self):
        ctx, service = self.ctx, self.ctx.service

        @user_errors
        def on_upscale(image, prompt, model, rule, steps, temp, deep_cache, seed, request: gr.Request,
                       progress=gr.Progress()):
            try:
                req = service.sample_request(prompt, mode="upsample", model=model, seed=seed, upsample_sampler=rule,
                                             upsample_steps=steps, upsample_temp=temp, upsample_deep_cache=deep_cache)
                job = service.submit_upsample(req, [image], **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous result stays
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            yield {self.status: "Queued…"}
            out = yield from run_job(job, progress, self.status, self.result)
            if out is None:
                return
            seed = out.settings[0]["seed"]
            yield {self.result: out.images[0],
                   self.status: f"Upscaled in {out.seconds:.1f} s · seed {seed} · the PNG records its settings"}

        # The live previews land in the result's place until the image is there.
        gr.on([self.upscale_btn.click, self.prompt.submit], on_upscale,
              inputs=[self.image, self.prompt, ctx.model, self.rule, self.steps, self.temp, self.deep_cache, self.seed],
              outputs=[self.status, self.result], **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)
        ctx.model.change(upscale_help, inputs=ctx.model, outputs=self.help, queue=False, **PRIVATE)

    def follow_defaults(self):
        return [(self.rule, "upsample_sampler"), (self.steps, "upsample_steps")]
