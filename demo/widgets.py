"""Pieces the demo's tabs share: error conversion, plugin controls, following a job with progress and previews."""
import functools
import html
import inspect
import logging
import time
from typing import Callable, Dict, List, Optional

import gradio as gr
from gradio.context import LocalContext
from prometheus_client import Counter

from glide.data import shapes
from glide.declarations import BY_NAME
from glide.errors import Cancelled, QueueFull, RateLimited, ServerError, UserError
from glide.families import FAMILIES
from glide.serving.jobs import Compare
from glide.settings import step_count

from . import imaging
from .service import DemoService
from .users import user_of

log = logging.getLogger("glide.demo")

# Errors whose message is meant for the user as it is (a problem with the request, or the server's own trouble:
# glide.errors); anything else is a bug, logged with its traceback.
USER_ERRORS = (UserError, ServerError)
# UI events are for the page only; the API has its own plain endpoints (demo.api).
PRIVATE = dict(api_visibility="private")
STAGE_TITLES = {"base": "Base model", "upsample": "Upsampler"}
TOAST_S = 6   # how long a warning toast stays (gradio's default, 10 s, lets a few quick ones pile up)
# On /metrics (glide_internal_errors_total): a server that works keeps it at 0, so operators can alert on it.
INTERNAL_ERRORS = Counter("glide_internal_errors", "Handler failures that are bugs in the server, each logged "
                          "with its traceback", ["handler"])


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
        if isinstance(exc, RateLimited):
            return gr.Error(str(exc), title="Too many images this minute", print_exception=False)
        if isinstance(exc, QueueFull):
            return gr.Error(str(exc), title="Queue full", print_exception=False)
        if isinstance(exc, Cancelled):    # its user pressed Stop, or its client went away: nothing to report
            return gr.Error("Stopped.", title="Stopped", print_exception=False)
        if isinstance(exc, ServerError):
            return gr.Error(html.escape(str(exc), quote=False), title="Not possible right now", print_exception=False)
        if isinstance(exc, USER_ERRORS):
            # gradio renders the message as HTML: keep echoed user input from becoming markup.
            return gr.Error(html.escape(str(exc), quote=False), title="Please check the input", print_exception=False)
        log.exception("internal error in %s", fn.__name__)
        INTERNAL_ERRORS.labels(fn.__name__).inc()
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


def declared(name: str, **overrides) -> Dict:
    """A setting's label, description, bounds and initial value (glide.declarations) as a control's keywords;
    `overrides` for what this control shows differently (the seed box shows -1, the UI's word for random)."""
    setting = BY_NAME[name]
    keywords = dict(label=setting.label, info=setting.help[:1].upper() + setting.help[1:])
    if setting.lo is not None:
        keywords["minimum"] = setting.lo
    if setting.hi is not None:
        keywords["maximum"] = setting.hi
    value = setting.default if setting.default is not None else setting.fallback
    if value is not None:
        keywords["value"] = value
    return {**keywords, **overrides}


def caller(service: DemoService, request: Optional[gr.Request]) -> Dict[str, Optional[str]]:
    """Who sends a request, as the service's submit methods take it: its session (what Stop cancels) and its
    user (whom fairness, the per-user cap and the rate limit count it against: demo.users)."""
    return {"session": session_of(request), "user": user_of(request)}


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


# ---------------------------------------------------------------------------------------------- plugin controls
def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


# Plain-words help for the built-in guidance strategies, shown instead of their plugin descriptions
# (which are written for programmers: formulas). Other plugins keep their own descriptions.
GUIDANCE_HELP = {
    "none": "The model follows the prompt as it was trained to, without extra steering.",
    "classifier-free": "Runs the model with and without the prompt and pushes the image further in the "
                       "prompt's direction. Higher scales follow the prompt more closely, with less variety.",
    "clip": "Nudges every step towards what CLIP (a model that scores how well an image and a text match) "
            "considers closer to the prompt.",
}
SCALE_HELP = {
    "classifier-free": "1 = the model as trained (no extra push); 0 = ignores the prompt; "
                       "3–5 usually best; higher = closer to the prompt, less varied",
    "clip": "0 = no CLIP steering (unguided); higher = pushed harder towards the prompt",
}


def param_control(param: dict, visible: bool, plugin: str = ""):
    """A widget for one plugin parameter, built from its Param description (type, default, range, help)."""
    label, info, lo, hi, default = _title(param["name"]), param["help"] or None, param["min"], param["max"], param["default"]
    if param["name"] == "guidance_scale" and plugin in SCALE_HELP:
        info = SCALE_HELP[plugin]
    if param["type"] == "bool":
        return gr.Checkbox(value=bool(default), label=label, info=info, visible=visible)
    if param.get("choices"):
        return gr.Dropdown(param["choices"], value=default, label=label, info=info, visible=visible)
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

    def __init__(self, label: str, plugins: List[dict], default: str, guidance: bool = False):
        self.guidance = guidance   # guidance strategies: the built-in ones are described in plain words
        self.plugins = {p["name"]: p for p in plugins}
        self.dropdown = gr.Dropdown([p["name"] for p in plugins], value=default, label=label)
        self.description = gr.Markdown(self._describe(default))
        self.controls = [(p["name"], q["name"], param_control(q, p["name"] == default, p["name"]))
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
        if not plugin:
            return ""
        text = GUIDANCE_HELP.get(name, plugin["description"]) if self.guidance else plugin["description"]
        return f"<small>{text}</small>"

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


# ---------------------------------------------------------------------------------------------- the shapes grammar
def grammar_notice(prompt: str, model: str) -> str:
    """A notice for a prompt the model cannot draw: its family only knows the shapes grammar and the prompt is
    not a sentence of it (or describes a scene the family never shows). Empty when there is nothing to say."""
    family = FAMILIES.get(model)
    warning = family.prompt_warning(prompt) if family is not None else ""
    return f"⚠️ **The model cannot draw this prompt**: {warning} (see *Words this model understands*)." \
        if warning else ""


def grammar_words(model: str) -> str:
    """The words the model's family understands, from the grammar itself (glide.data.shapes); empty for
    families that take any text."""
    family = FAMILIES.get(model)
    if family is None or not family.has_checker:
        return ""
    def words(items):
        return ", ".join(f"`{w}`" for w in items)
    sizes = " · ".join(" / ".join(ws) for ws in shapes.SIZE_WORDS.values())
    positions = " · ".join(" / ".join(ps) for ps in shapes.POSITION_PHRASES.values())
    pairs = " or ".join(f"{a} & {b}" for a, b in shapes.OPPOSITE_PAIRS)
    one, two = shapes.TEMPLATES[1][0], shapes.TEMPLATES[2][0]
    shape = "a ‹size› ‹colour› ‹shape› ‹position›"
    return (f"- **Colours** (shapes and background): {words(shapes.PALETTE)}\n"
            f"- **Shapes**: {words(shapes.SHAPES)}\n"
            f"- **Sizes**: {sizes}\n"
            f"- **Positions**: {positions}\n"
            f"- **Backgrounds**: “on a ‹colour› background”\n"
            f"- **Sentences**: “{one.format(s1=shape, bg='‹colour›')}”, or two shapes: "
            f"“{two.format(s1=shape, s2=shape, bg='‹colour›')}”, at opposite positions ({pairs}), "
            "in different colours, neither in the background's colour.")


# ---------------------------------------------------------------------------------------------- following jobs
def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d} min" if seconds >= 60 else f"{seconds} s"


def stage_title(stage: str) -> str:
    """A stage in words: "Base model", "Upsampler"; a comparison's runs come already in words
    ("Classifier-free guidance, scale 3 — run 2 of 15 (base model)", glide.serving.batches.run_label)."""
    return STAGE_TITLES.get(stage, stage)


def planned_steps(job) -> List[int]:
    """The steps of each stage a job will run, in order, from its settings (what the whole-job bar counts)."""
    compared = job.payload.compared if isinstance(job.payload, Compare) else None
    settings = compared.base if compared else job.payload.settings
    length = FAMILIES[settings.model].diffusion_steps
    if settings.mode == "upsample":   # the upsampler alone, on given images
        return [step_count(settings.upsample_steps, length)]
    stages = [step_count(settings.steps, length)]
    if settings.upsample:
        stages.append(step_count(settings.upsample_steps, length))
    return stages * (len(compared.runs()) if compared else 1)


class JobProgress:
    """One bar for a whole job across its stages (base model, upsampler; a comparison's runs), with the time
    elapsed and an estimate of the time left. A stage that turns out longer or shorter than planned corrects
    the plan as it starts."""

    def __init__(self, planned: List[int]):
        self.planned, self.index, self.stage, self.last_step = list(planned), -1, None, -1
        self.start = time.monotonic()

    def update(self, stage: str, step: int, total: int) -> None:
        if stage != self.stage or step < self.last_step:
            self.index, self.stage = self.index + 1, stage
            if self.index == 0:
                self.start = time.monotonic()   # time waiting in the queue is not part of the estimate
        if self.index < len(self.planned):
            self.planned[self.index] = total
        else:
            self.planned.append(total)
        self.last_step = step

    @property
    def done(self) -> int:
        return sum(self.planned[:self.index]) + self.last_step + 1

    @property
    def total(self) -> int:
        return max(sum(self.planned), self.done)

    def describe(self) -> str:
        """E.g. "42% · 3 s elapsed, about 4 s left" (the bar's and the status line's words)."""
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done)
        return (f"{100 * self.done / self.total:.1f}% · {_duration(elapsed)} elapsed"
                + (f", about {_duration(left)} left" if self.done < self.total else ""))


def queue_words(running: int, waiting: int) -> str:
    """Where a waiting job stands, the same words for every user: the jobs running now and those waiting before
    it are all "ahead of yours"."""
    ahead = running + waiting
    if not ahead:
        return "Starting…"
    parts = [f"{n} {what}" for n, what in ((running, "running"), (waiting, "waiting")) if n]
    return f"Waiting for the device: {ahead} job{'s' if ahead > 1 else ''} ahead of yours ({', '.join(parts)})."


def follow(job, progress: gr.Progress, status, preview):
    """Yield UI updates while a job waits and runs: queue position, one progress bar for the whole job (all
    stages) with elapsed time and time left, the same in words on the status line, and x0 previews.

    Raises Cancelled once the user pressed Stop (run_job shows "stopped").
    """
    last_words, bar, said = None, JobProgress(planned_steps(job)), 0.0
    for event in job.stream():
        if event is None:
            if not job.started.is_set():
                words = queue_words(job.running_before(), job.ahead())
                if words != last_words:
                    last_words = words
                    yield {status: words}
            continue
        bar.update(event.stage, event.step, event.total)
        title = stage_title(event.stage)
        words = f"{title}: step {event.step + 1} of {event.total} · {bar.describe()}"
        progress(bar.done / bar.total, desc=words)
        update = {}
        if event.x0 is not None:
            update[preview] = imaging.preview_image(event.x0)
        # The status line says what the bar says, a few times a second (each update is a message to the page).
        now = time.monotonic()
        if update or now - said > 0.25 or event.step + 1 == event.total:
            update[status], said = words, now
        if update:
            yield update


def hidden_preview():
    """The update that hides a tab's live preview: once the results are in, it would repeat one of them."""
    return gr.update(visible=False, value=None)


def run_with_preview(job, progress, status, preview):
    """`run_job` for a tab whose live preview shows only while a job runs: shown (empty) when the job is queued,
    hidden again if it is stopped; the tab hides it with its results (`hidden_preview`)."""
    yield {status: "Queued…", preview: gr.update(visible=True, value=None)}
    out = yield from run_job(job, progress, status, preview)
    if out is None:
        yield {preview: hidden_preview()}
    return out


def run_job(job, progress, status, preview):
    """Follow a job to its end; returns its output, or None if it was stopped (after yielding a status)."""
    try:
        yield from follow(job, progress, status, preview)
        return job.outcome()
    except Cancelled:
        yield {status: "Stopped. Other users' requests are not affected."}
        return None
    finally:
        if not job.done.is_set():
            job.cancel()  # the page went away or the handler was cancelled: free the device


def client_connected() -> Callable[[], bool]:
    """For the event handler running now: a test of whether the client that sent its event is still there.

    When a client's stream closes (a closed tab, a killed script), gradio drops the session's message queue at
    once, and marks its events no longer alive when it gets to it (that second step can be cancelled along with
    the stream); it cannot stop a plain function's thread, so the handler asks. Outside an event (calls from
    Python), or should gradio's queue look otherwise, the client counts as there."""
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    running = getattr(queue, "active_jobs", None)
    sessions = getattr(queue, "pending_messages_per_session", None)
    if event_id is None or running is None or sessions is None:
        return lambda: True

    def connected() -> bool:
        events = [event for batch in list(running) for event in (batch or ()) if event._id == event_id]
        return all(getattr(event, "alive", True) and event.session_hash in sessions for event in events)
    return connected


def answer(job):
    """An API handler's wait for its job: the job's outcome, or Cancelled (the job cancelled, freeing the
    device) once the client that asked has gone away."""
    return job.wait(still_wanted=client_connected())


def warn(message: str, title: str = "Warning") -> None:
    """A warning toast that goes by itself after TOAST_S seconds, so that old ones do not pile up."""
    gr.Warning(message, title=title, duration=TOAST_S)


def refuse(exc: Exception) -> None:
    """Say what is wrong with a request as a warning toast, leaving the page's results as they are."""
    warn(html.escape(str(exc), quote=False), title="Please check the input")


def gallery_items(paths: List[str], settings: List[Dict]) -> list:
    """(path, caption) pairs with short captions (the seed): the full settings are in the PNG and beside it."""
    return [(p, f"seed {s['seed']}") for p, s in zip(paths, settings)]
