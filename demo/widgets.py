"""Pieces the demo's tabs share: error conversion, plugin controls, following a job with progress and previews."""
import functools
import html
import inspect
import logging
from typing import Dict, List, Optional

import gradio as gr
from PIL import Image

from glide.errors import UserError
from glide.model_registry import FAMILIES
from glide.scheduler import JobCancelled, QueueFull
from samplers import Cancelled

from . import imaging
from .service import DemoService, settings_summary

log = logging.getLogger("glide.demo")

# Errors whose message is meant for the user as it is; anything else is a bug, logged with its traceback.
USER_ERRORS = (UserError, QueueFull)
# UI events are for the page only; the API has its own plain endpoints (demo.api).
PRIVATE = dict(api_visibility="private")
STAGE_TITLES = {"base": "Base model", "upsample": "Upsampler"}


def user_errors(fn):
    """Raise every failure of a handler as a gr.Error with a message that says what to fix.

    Known user errors keep their message; anything else is logged with its traceback on the server
    and reported in one line, so the page never shows a traceback and the server keeps running.
    Works for plain functions and generators alike (functools.wraps keeps the signature that
    gradio inspects for gr.Request and gr.Progress).
    """
    def convert(exc: BaseException) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        if isinstance(exc, QueueFull):
            return gr.Error(str(exc), title="Queue full", print_exception=False)
        if isinstance(exc, USER_ERRORS):
            # gradio renders the message as HTML: keep echoed user input from becoming markup.
            return gr.Error(html.escape(str(exc), quote=False), title="Please check the input", print_exception=False)
        log.exception("internal error in %s", fn.__name__)
        return gr.Error(f"Internal error (logged): {type(exc).__name__}. This is a bug in the server, not a "
                        "problem with your input; try again.", title="Internal error", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                raise convert(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            raise convert(exc) from None
    return wrapper


def session_of(request: Optional[gr.Request]) -> Optional[str]:
    """The browser tab's (or API client's) session: what Stop cancels."""
    return getattr(request, "session_hash", None) if request is not None else None


def stop_handler(service: DemoService):
    """A Stop button's handler: cancels this user's jobs only (others sharing a run carry on)."""
    def on_stop(request: gr.Request):
        n = service.cancel_session(session_of(request))
        # When something stops, its own handler writes "Stopped." within a step; writing here too would
        # race with it (this reply can land last and leave "Stopping…" on the page for good).
        return gr.update() if n else "Nothing of yours is running."
    return on_stop


def model_description(name: str) -> str:
    family = FAMILIES[name]
    return f"{family.description} · licence: {family.license}"


def editor_value(path: str, max_side: int) -> dict:
    """An image as the inpainting editor's value, ready to paint on."""
    # The brush paints on a layer: without an empty one the canvas would take no strokes.
    size = imaging.open_upload(path, "image", max_side).size
    return {"background": path, "layers": [Image.new("RGBA", size, (0, 0, 0, 0))], "composite": path}


# ---------------------------------------------------------------------------------------------- plugin controls
def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def param_control(param: dict, visible: bool):
    """A widget for one plugin parameter, built from its Param description (type, default, range, help)."""
    label, info, lo, hi, default = _title(param["name"]), param["help"] or None, param["min"], param["max"], param["default"]
    if param["type"] == "bool":
        return gr.Checkbox(value=bool(default), label=label, info=info, visible=visible)
    if param["type"] in ("int", "float") and lo is not None and hi is not None and hi - lo <= 100:
        step = 1 if param["type"] == "int" else (0.05 if hi - lo <= 1 else 0.1)
        return gr.Slider(lo, hi, value=default, step=step, label=label, info=info, visible=visible)
    if param["type"] in ("int", "float"):  # open or very wide ranges: a number box rather than a slider
        return gr.Number(value=default, minimum=lo, maximum=hi, precision=0 if param["type"] == "int" else None,
                         label=label, info=info, visible=visible)
    return gr.Textbox(value=str(default), label=label, info=info, visible=visible)


class PluginPanel:
    """A dropdown of step rules or guidance strategies, and the controls of every plugin's parameters.

    Only the chosen plugin's controls are visible; `params(data)` reads the chosen plugin's values.
    A newly installed sampler plugin brings its choice and controls here without touching the UI code.
    """

    def __init__(self, label: str, plugins: List[dict], default: str):
        self.plugins = {p["name"]: p for p in plugins}
        self.dropdown = gr.Dropdown([p["name"] for p in plugins], value=default, label=label)
        self.description = gr.Markdown(self._describe(default))
        self.controls = [(p["name"], q["name"], param_control(q, p["name"] == default))
                         for p in plugins for q in p["params"]]
        self.dropdown.change(self._show, inputs=self.dropdown, outputs=[self.description] + self.widgets,
                             queue=False, **PRIVATE)

    @property
    def widgets(self) -> list:
        return [c for _, _, c in self.controls]

    @property
    def inputs(self) -> set:
        return {self.dropdown, *self.widgets}

    def _describe(self, name: str) -> str:
        plugin = self.plugins.get(name)
        return f"<small>{plugin['description']}</small>" if plugin else ""

    def _show(self, name):
        return [self._describe(name)] + [gr.update(visible=plugin == name) for plugin, _, _ in self.controls]

    def params(self, data: dict) -> Dict:
        chosen = data[self.dropdown]
        return {param: data[c] for plugin, param, c in self.controls if plugin == chosen}

    def restore(self, name: str, params: Optional[Dict]) -> dict:
        """Updates that select `name` and set its parameters (from a PNG's settings)."""
        if name not in self.plugins:
            return {}
        updates = {self.dropdown: name}
        for plugin, param, c in self.controls:
            if plugin == name and param in (params or {}):
                updates[c] = params[param]
        return updates


# ---------------------------------------------------------------------------------------------- following jobs
def follow(job, progress: gr.Progress, status, preview):
    """Yield UI updates while a job waits and runs: queue position, a progress bar per stage, x0 previews.

    Raises JobCancelled once the user pressed Stop (run_job shows "stopped").
    """
    last_ahead = None
    for event in job.stream():
        if event is None:
            if not job.started.is_set():
                ahead = job.ahead()
                if ahead != last_ahead:
                    last_ahead = ahead
                    yield {status: f"Waiting for the device: {ahead} request(s) ahead of yours."
                                   if ahead else "Starting…"}
            continue
        title = STAGE_TITLES.get(event.stage, event.stage)
        progress((event.step + 1, event.total), desc=title, unit="steps")
        if event.x0 is not None:
            yield {preview: imaging.preview_image(event.x0),
                   status: f"{title}: step {event.step + 1} of {event.total} (preview of the current x0 prediction)"}


def run_job(job, progress, status, preview):
    """Follow a job to its end; returns its output, or None if it was stopped (after yielding a status)."""
    try:
        yield from follow(job, progress, status, preview)
        return job.outcome()
    except (JobCancelled, Cancelled):
        yield {status: "Stopped. Other users' requests are not affected."}
        return None
    finally:
        if not job.done.is_set():
            job.cancel()  # the page went away or the handler was cancelled: free the device


def gallery_items(out) -> list:
    """(path, caption) pairs: the final images, then the base images when they differ."""
    items = [(p, f"{settings_summary(s)} · final") for p, s in zip(out.images, out.settings)]
    if out.base_images != out.images:
        items += [(p, f"{settings_summary(s)} · base") for p, s in zip(out.base_images, out.settings)]
    return items
