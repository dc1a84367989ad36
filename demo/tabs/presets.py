"""The preset dropdown that Text to image and Inpainting share: choosing a preset sets the controls it covers;
changing one of those controls by hand turns the label to "custom"; choosing a model goes back to its defaults."""
from typing import Any, Dict

import gradio as gr

from glide.settings import PRESETS, GenerationSettings, Limits

from ..context import Context
from ..widgets import PRIVATE, PluginPanel, user_errors

DEFAULTS = "defaults"   # the preset choice that means none: the family's own defaults
CUSTOM = "custom"       # what the preset choice says once a control it set was changed by hand
# The guidance parameters a preset may set (the guidance interval); the scale is never one of them.
PRESET_PARAMS = {k for p in PRESETS.values() for k in p.plugin_params}


def preset_info(name: str) -> str:
    """The preset dropdown's help for the choice it shows."""
    if name == CUSTOM:
        return "Your own settings: a control a preset sets was changed. Choose a preset to set them again."
    if name in PRESETS:
        return f"Sets the controls below to {name}: {PRESETS[name].description}."
    return "Sets the controls below to the model's own defaults (its fastest settings measured as good as slower ones)."


def chosen_settings(name: str, mode: str, model: str, guidance: str, limits: Limits) -> GenerationSettings:
    """What the preset `name` (DEFAULTS: none) makes of a request, through the one validator like any request."""
    return GenerationSettings.create("preset", mode=mode, model=model, guidance=guidance, seed=0, limits=limits,
                                     preset=None if name == DEFAULTS else name)


def preset_holds(name: str, model: str, guidance: str, shown: Dict[str, Any], limits: Limits,
                 mode: str = "generate") -> bool:
    """Whether the controls still show every value the preset `name` (DEFAULTS: the model's defaults) sets:
    `shown` holds the controls' values by setting name (sampler, steps, ...; guidance parameters by theirs)."""
    if name not in PRESETS and name != DEFAULTS:
        return False
    chosen = chosen_settings(name, mode, model, guidance, limits)
    expected = {key: getattr(chosen, key) for key in shown if hasattr(chosen, key)}
    expected.update({k: v for k, v in chosen.guidance_params.items() if k in shown})

    def same(a, b) -> bool:   # a slider may say 10.0 for 10, a dropdown "8" for 8
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)
    return all(same(shown.get(k), v) for k, v in expected.items())


class PresetPicker:
    """The dropdown (lay it out where it goes), then `wire` it to the controls a preset sets."""

    def __init__(self, elem_id: str):
        self.dropdown = gr.Dropdown(
            [("the model's defaults", DEFAULTS)] + [(name, name) for name in PRESETS] + [("custom", CUSTOM)],
            value=DEFAULTS, label="Preset", elem_id=elem_id, info=preset_info(DEFAULTS))

    def wire(self, ctx: Context, mode: str, controls: Dict[str, gr.components.Component], rules: PluginPanel,
             guidance: PluginPanel):
        """`controls`: the tab's controls by the setting they show (steps, upsample_steps, deep_cache, ...; the
        step rule is `rules`' dropdown, the guidance's interval among `guidance`'s parameters)."""
        controls = {**controls, "sampler": rules.dropdown}

        @user_errors
        def on_preset(name, model, strategy):
            if name == CUSTOM:   # nothing to set: the controls stay as they are
                return {self.dropdown: gr.update(info=preset_info(CUSTOM))}
            # Of the guidance's parameters only those a preset sets change (the scale stays).
            chosen = chosen_settings(name, mode, model, strategy, ctx.limits)
            updates = {self.dropdown: gr.update(info=preset_info(name))}
            for setting, control in controls.items():
                value = getattr(chosen, setting)
                if setting == "steps" and not isinstance(value, int):
                    continue   # a respacing spec the slider cannot show
                updates[control] = str(value) if setting == "upsample_steps" else value
            updates.update(rules.restore(chosen.sampler, chosen.sampler_params))
            updates.update(guidance.restore(chosen.guidance, {k: v for k, v in chosen.guidance_params.items()
                                                              if k in PRESET_PARAMS}))
            return updates

        self.dropdown.input(on_preset, inputs=[self.dropdown, ctx.model, guidance.dropdown],
                            outputs=[self.dropdown, *controls.values(), *rules.widgets, guidance.dropdown,
                                     *guidance.widgets], queue=False, **PRIVATE)

        # A person setting a control a preset sets to another value makes the settings their own: the label stops
        # naming the preset. (`input`, not `change`: the preset's own updates and a restore do not count.)
        guidance_controls = [c for _, param, c in guidance.controls if param in PRESET_PARAMS]

        @user_errors
        def on_control(data):
            strategy = data[guidance.dropdown]
            shown = {setting: data[c] for setting, c in controls.items()}
            shown.update({param: data[c] for plugin, param, c in guidance.controls
                          if plugin == strategy and param in PRESET_PARAMS})
            if preset_holds(data[self.dropdown], data[ctx.model], strategy, shown, ctx.limits, mode):
                return gr.skip()
            return gr.update(value=CUSTOM, info=preset_info(CUSTOM))

        gr.on([c.input for c in [*controls.values(), *guidance_controls]], on_control,
              inputs={self.dropdown, ctx.model, guidance.dropdown, *controls.values(), *guidance_controls},
              outputs=self.dropdown, queue=False, show_progress="hidden", **PRIVATE)
        # Choosing a model sets its defaults (ModelPicker.wire): the label says so.
        ctx.model.input(lambda: gr.update(value=DEFAULTS, info=preset_info(DEFAULTS)), outputs=self.dropdown,
                        queue=False, show_progress="hidden", **PRIVATE)
