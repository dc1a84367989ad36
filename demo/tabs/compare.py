"""The Compare tab: one prompt under several guidance strategies, their scores and the measured trade-off."""
from typing import List, Tuple

import gradio as gr

from glide.evaluation import measures
from glide.families import FAMILIES
from glide.settings import COMPARE_STRATEGIES

from ..context import EXAMPLES, Context
from ..widgets import (
    PRIVATE,
    SCALE_HELP,
    USER_ERRORS,
    caller,
    declared,
    refuse,
    run_job,
    stop_handler,
    user_errors,
)

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
