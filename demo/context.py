"""What every tab of the demo needs: the service, the shared model choice, how sampling events queue, and the
prompt row, examples and steps slider they all lay out the same way (demo.tabs, demo.api)."""
from dataclasses import dataclass
from typing import List, Optional

import gradio as gr

from glide.families import FAMILIES
from glide.settings import MIN_STEPS

from .service import DemoService
from .widgets import PRIVATE, grammar_notice, grammar_words

# Sentences of the shapes grammar (glide.data.shapes); tests/test_demo.py checks that each one parses.
EXAMPLES = [
    "a small red circle on the left on a blue background",
    "a large yellow square at the top on a black background",
    "a large green triangle on the right and a small purple circle on the left on a white background",
]
PLACEHOLDER = "Describe the image, e.g. “" + EXAMPLES[1] + "”"
# A prompt box where Enter submits and Shift+Enter starts a new line (gradio: one line, growing up to four).
PROMPT_BOX = dict(lines=1, max_lines=4, info="Enter to start · Shift+Enter for a new line")


@dataclass
class Context:
    """What every tab needs: the service, the shared model choice, and how sampling events queue."""

    service: DemoService
    model: gr.Dropdown
    rules: List[dict]              # the registry's step rules (name, description, params)
    strategies: List[dict]         # the registry's guidance strategies
    device_events: dict            # concurrency settings of every event that samples

    @property
    def limits(self):
        return self.service.limits

    def default_scale(self, strategy: str) -> float:
        """A strategy's declared scale's default (the registry's, not a number written here)."""
        described = next(g for g in self.strategies if g["name"] == strategy)
        return next(p["default"] for p in described["params"] if p["name"] == described["scale"])

    @property
    def family(self):
        """The default model's family: its sampling defaults are the controls' initial values."""
        return FAMILIES[self.service.default_model]

    def prompt_row(self, label: str, action: str, prompt_id: str, button_id: str, notice_id: str,
                   stop_id: Optional[str] = None, value: Optional[str] = None):
        """The top of every tab: the prompt box, its out-of-grammar notice, the run and Stop buttons (Esc presses the
        Stop of the tab in view)."""
        prompt = gr.Textbox(value, label=label, placeholder=PLACEHOLDER, elem_id=prompt_id, **PROMPT_BOX)
        self.grammar_notice(prompt, notice_id)
        with gr.Row():
            run = gr.Button(action, variant="primary", elem_id=button_id)
            stop = gr.Button("Stop", variant="stop", elem_id=stop_id, elem_classes="stop-job")  # Esc: demo/page.js
        return prompt, run, stop

    def grammar_notice(self, prompt: gr.Textbox, elem_id: str) -> gr.Markdown:
        """Under a prompt box: a notice when the chosen model cannot draw the prompt (widgets.grammar_notice)."""
        notice = gr.Markdown(grammar_notice(prompt.value, self.service.default_model), elem_id=elem_id,
                             elem_classes="grammar-notice")
        gr.on([prompt.change, self.model.change], grammar_notice, inputs=[prompt, self.model], outputs=notice,
              queue=False, show_progress="hidden", **PRIVATE)
        return notice

    def examples(self, prompt: gr.Textbox, elem_id: str) -> None:
        """Example prompts, and the words the chosen model understands (for a model that knows only a grammar)."""
        gr.Examples(EXAMPLES, inputs=prompt, label="Examples")
        words = grammar_words(self.service.default_model)
        with gr.Accordion("Words this model understands", open=False, visible=bool(words)) as box:
            text = gr.Markdown(words, elem_id=elem_id)

        def on_model(name):
            words = grammar_words(name)
            return gr.update(visible=bool(words)), words

        self.model.change(on_model, inputs=self.model, outputs=[box, text], queue=False, **PRIVATE)

    def steps_slider(self, elem_id=None) -> gr.Slider:
        # A slider needs max > min; the service enforces the real limit whatever the slider allows.
        return gr.Slider(MIN_STEPS, max(self.limits.max_steps, MIN_STEPS + 1),
                         value=self.service.default_steps(self.service.default_model),
                         step=1, label="Steps", info="Base model sampling steps", elem_id=elem_id)
