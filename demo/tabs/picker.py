"""The model dropdown shared by the tabs: its description, and a background download with progress."""
from typing import List, Tuple

import gradio as gr

from glide.families import FAMILIES

from ..models import APPROX_BYTES, human_bytes, model_label
from ..service import DemoService
from ..widgets import (
    PRIVATE,
    model_description,
    user_errors,
)


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
