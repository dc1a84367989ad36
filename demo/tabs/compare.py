"""The Compare tab: one prompt under several guidance strategies over the same seeds, a row per strategy (and
per sweep scale) with its measured fidelity and spread of layouts, and the family's measured trade-off."""
import base64
import html
from pathlib import Path
from typing import List, Tuple

import gradio as gr

from glide import comparison
from glide.evaluation import measures
from glide.families import FAMILIES
from glide.settings import COMPARE_SEEDS, COMPARE_STRATEGIES

from ..context import EXAMPLES, Context
from ..service import CompareOutput
from ..widgets import (
    PRIVATE,
    SCALE_HELP,
    USER_ERRORS,
    caller,
    declared,
    hidden_preview,
    refuse,
    run_with_preview,
    stop_handler,
    user_errors,
)

# The rows: each a heading that wraps (title, fidelity, spread) over its images in equal columns, so that a row
# fits any width; small samples shown sharp. Added to the app's CSS (demo.app).
CSS = """
#compare-rows .cmp-verdict { margin: 0 0 .6em; font-weight: 600; }
#compare-rows .cmp-row { margin: 0 0 .9em; }
#compare-rows .cmp-head { margin: 0 0 .3em; line-height: 1.35; overflow-wrap: anywhere; }
#compare-rows .cmp-head .cmp-measures { display: block; font-size: .9em; opacity: .85; }
#compare-rows .cmp-images { display: grid; gap: 6px; }
#compare-rows figure { margin: 0; min-width: 0; }
#compare-rows figure img { width: 100%; height: auto; display: block; image-rendering: pixelated;
                           border-radius: 3px; }
#compare-rows figcaption { font-size: .8em; line-height: 1.25; overflow-wrap: anywhere; }
#compare-rows .cmp-right { color: #138a3c; font-weight: 700; }
#compare-rows .cmp-wrong { color: #c81e1e; font-weight: 700; }
#compare-rows .cmp-star { color: #d99a00; }
#compare-rows .cmp-legend { font-size: .85em; margin: .4em 0 0; padding: 0; list-style: none; }
#compare-rows .cmp-legend li { margin: .15em 0; overflow-wrap: anywhere; }
#tradeoff img { max-width: 100%; height: auto; }
"""

_MARK_CLASS = {"✓": "cmp-right", "✗": "cmp-wrong", "★": "cmp-star"}


def _data_uri(path: str) -> str:
    """A PNG file inline (the samples are small), so the rows are one self-contained piece of HTML; the PNG keeps
    the settings that made it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _mark(mark: str) -> str:
    return f'<span class="{_MARK_CLASS[mark]}">{mark}</span>' if mark in _MARK_CLASS else f"<b>{html.escape(mark)}</b>"


def rows_html(out: CompareOutput) -> str:
    """The comparison as HTML: the verdict, then per row its title (★ on the most faithful) and measures over its
    images, each captioned with its seed and the checker's mark, then the legend of every mark shown."""
    esc = html.escape
    parts = ['<div class="cmp">']
    summary = comparison.verdict(out.rows)
    if summary:
        star = _mark("★") + " " if any(r.best for r in out.rows) else ""
        parts.append(f'<p class="cmp-verdict">{star}{esc(summary)}</p>')
    for row, paths in zip(out.rows, out.images):
        parts.append(f'<div class="cmp-row" data-guidance="{esc(row.guidance)}" data-best="{str(row.best).lower()}"'
                     f' data-scale="{"" if row.scale is None else f"{row.scale:g}"}">')
        parts.append(f'<div class="cmp-head">{_mark("★") + " " if row.best else ""}<b>{esc(row.title)}</b>'
                     f'<span class="cmp-measures">fidelity {esc(row.fidelity.text)} · {esc(row.spread.text)} · '
                     f'{row.seconds:.1f} s</span></div>')
        parts.append(f'<div class="cmp-images" style="grid-template-columns: repeat({len(paths)}, minmax(0, 180px))">')
        for entry, path in zip(row.entries, paths):
            verdict = comparison.checker_verdict(entry.checker)
            ok = comparison.judged(entry)
            mark = "" if ok is None else _mark("✓" if ok else "✗") + " "
            wrong = "" if ok is not False else f": {esc(verdict[2:])}"
            alt = f"{row.title}, seed {entry.seed}" + (f", {verdict}" if verdict else "")
            parts.append(f'<figure data-seed="{entry.seed}"><img src="{_data_uri(path)}" alt="{esc(alt)}" '
                         f'title="{esc(comparison.caption(entry))}"><figcaption>{mark}seed {entry.seed}{wrong}'
                         f'</figcaption></figure>')
        parts.append("</div></div>")
    parts.append('<ul class="cmp-legend">')
    parts += [f"<li>{_mark(mark)} {esc(meaning)}</li>" for mark, meaning in comparison.legend(out.rows)]
    parts.append("</ul></div>")
    return "".join(parts)


def tradeoff_view(model_name: str, clip_scale: float, cfg_scale: float):
    """The family's measured guidance trade-off with the chosen scales marked, and a line saying what it is."""
    report = measures.load_tradeoff(FAMILIES[model_name])
    if report is None:
        return None, (f"<small>No trade-off measurement for {model_name}: only the shapes family's guidance can be "
                      f"judged by a program (`python -m glide.eval shapes --tradeoff`).</small>")
    marks = [("classifier-free", cfg_scale, f"your CFG {cfg_scale:g}"), ("clip", clip_scale, f"your CLIP {clip_scale:g}")]
    figure = measures.tradeoff_figure(report, marks)
    return figure, (f"<small>**This family's measured guidance trade-off** (fidelity against diversity and realism, "
                    f"one curve per guidance): {report['prompts']} two-shape prompts x {report['seeds']} seeds per point "
                    f"({report['date']}, `{report['command']}`): each point a guidance scale, ★ your scales "
                    f"(between measured points, interpolated). Up is more scenes fully right; right on the upper "
                    f"plot is more varied layouts (1 = as varied as the training data); left on the lower plot "
                    f"is closer to a clean render.</small>")


class CompareTab:
    """One prompt under CLIP guidance, classifier-free guidance and none (or any installed strategies), each
    over the same seeds: a row per strategy and sweep scale with its fidelity and spread, the legend, the
    whole as one PNG; the family's measured trade-off with the chosen scales marked."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        with gr.Row(elem_classes="tab-row"):
            with gr.Column(scale=2, elem_classes="controls"):
                with gr.Column(elem_classes="controls-main"):
                    # Two shapes: their layout is where CLIP's variety against classifier-free's sameness shows.
                    self.prompt, self.compare_btn, self.stop_btn = ctx.prompt_row(
                        "Prompt", "Compare", "compare-prompt", "compare-btn", "compare-notice", value=EXAMPLES[2])
                with gr.Column(elem_classes="controls-more"):
                    ctx.examples(self.prompt, "compare-words")
                    names = [g["name"] for g in ctx.strategies]
                    self.strategies = gr.CheckboxGroup(
                        names, value=[n for n in COMPARE_STRATEGIES if n in names], label="Guidance strategies",
                        info="Any installed strategy, each at its default scale (CLIP and classifier-free: the "
                             "sliders below)", elem_id="compare-strategies")
                    with gr.Row():
                        self.seed = gr.Number(**declared("seed", value=-1, info="The first seed of every row; "
                                                         "-1 = random"), precision=0, elem_id="compare-seed")
                        self.seeds = gr.Slider(1, ctx.limits.max_batch, value=min(COMPARE_SEEDS, ctx.limits.max_batch),
                                               step=1, label="Seeds per row", elem_id="compare-seeds",
                                               info="Every row runs the same seeds: what varies along a row is "
                                                    "the seed, down a column the guidance")
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
                    self.sweep = gr.Textbox(label="Sweep scales (optional)", placeholder="e.g. 1, 3, 6",
                                            elem_id="compare-sweep",
                                            info=f"A row per scale (at most {ctx.limits.max_sweep}) for every "
                                                 f"chosen strategy that has a scale, beside its own scale")
            with gr.Column(scale=3, elem_classes="results"):
                self.status = gr.Markdown("", elem_id="compare-status")
                # Shown while a job runs only: once the rows are in, a preview would repeat one of them.
                self.preview = gr.Image(label="Live preview", interactive=False, height=160, format="png",
                                        visible=False)
                self.rows = gr.HTML("", elem_id="compare-rows", padding=False)
                self.grid = gr.File(label="The comparison as one PNG (rows, measures, legend; its settings inside)",
                                    interactive=False, visible=False, elem_id="compare-grid")
                figure, note = tradeoff_view(ctx.service.default_model, self.clip_scale.value, self.cfg_scale.value)
                # The label would be drawn over the figure's title: the note under the plot names it instead.
                self.tradeoff = gr.Plot(figure, show_label=False, elem_id="tradeoff", format="png")
                self.tradeoff_note = gr.Markdown(note, elem_id="tradeoff-note")
        self._wire()

    def _wire(self):
        ctx, service = self.ctx, self.ctx.service

        @user_errors
        def on_compare(text, model_name, seed, seeds, rule, steps, clip_scale, cfg_scale, upsample, sweep,
                       strategies, request: gr.Request, progress=gr.Progress()):
            try:
                req = service.compare_request(text, model=model_name, seed=seed, seeds=seeds, sampler=rule,
                                              steps=steps, clip_scale=clip_scale, cfg_scale=cfg_scale,
                                              upsample=upsample, sweep=sweep, strategies=strategies or None)
                job = service.submit_compare(req, **caller(service, request), previews=True)
            except USER_ERRORS as exc:   # nothing started: the previous results stay as they are
                refuse(exc)
                yield {self.status: gr.skip()}
                return
            out = yield from run_with_preview(job, progress, self.status, self.preview)
            if out is None:
                return
            seeds_text = (f"seed {out.seeds[0]}" if len(out.seeds) == 1
                          else f"seeds {out.seeds[0]}–{out.seeds[-1]}")
            yield {self.rows: rows_html(out), self.grid: gr.update(value=out.grid, visible=True),
                   self.preview: hidden_preview(),
                   self.status: f"{len(out.rows)} rows, each over the same {seeds_text}: along a row the seed "
                                f"changes, down a column the guidance."}

        gr.on([self.compare_btn.click, self.prompt.submit], on_compare,
              inputs=[self.prompt, ctx.model, self.seed, self.seeds, self.rule, self.steps, self.clip_scale,
                      self.cfg_scale, self.upsample, self.sweep, self.strategies],
              outputs=[self.status, self.preview, self.rows, self.grid],
              show_progress_on=self.rows, **ctx.device_events, **PRIVATE)
        self.stop_btn.click(stop_handler(service), outputs=self.status, queue=False, **PRIVATE)
        gr.on([ctx.model.change, self.clip_scale.change, self.cfg_scale.change], tradeoff_view,
              inputs=[ctx.model, self.clip_scale, self.cfg_scale], outputs=[self.tradeoff, self.tradeoff_note],
              trigger_mode="always_last", queue=False, **PRIVATE)

    def follow_defaults(self) -> List[Tuple[gr.components.Component, str]]:
        return [(self.rule, "sampler"), (self.steps, "steps")]
