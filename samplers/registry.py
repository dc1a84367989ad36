"""The plugin manager: built-ins plus every installed package advertising the `glide.samplers` entry point.

A plugin that fails to import, whose hook raises, whose step rule or strategy breaks the contract, or
that reuses a name already taken is left out with a `PluginWarning` naming it; the rest still works.
Built-ins are collected first, so a plugin cannot replace one by taking its name.
"""
import warnings
from functools import lru_cache
from importlib import metadata
from typing import Callable, Dict

import pluggy

from . import builtin_guidance, builtin_rules, builtin_solvers, hookspecs
from .base import Param, PluginWarning, SamplerError

BUILTINS = (builtin_rules, builtin_solvers, builtin_guidance)


def _warn(message: str) -> None:
    warnings.warn(message, PluginWarning, stacklevel=3)


class Registry:
    """Step rules and guidance strategies by name, collected through the pluggy hooks."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for module in BUILTINS:
            self.pm.register(module, name=module.__name__)
        if load_entry_points:
            self._load_entry_points()
        self.step_rules = self._collect("glide_step_rules", "step rule", self._check_step_rule)
        self.guidance = self._collect("glide_guidance_strategies", "guidance strategy", self._check_strategy)
        self.components: Dict[str, Callable] = {}
        self.component_plugins: Dict[str, str] = {}   # component name -> the plugin that provides it
        for plugin, provided in self._results("glide_components"):
            if not isinstance(provided or {}, dict):
                _warn(f"sampler plugin {plugin!r}: glide_components must return a dict of loaders; ignored")
                continue
            for name, load in (provided or {}).items():
                if name in self.components:
                    _warn(f"sampler plugin {plugin!r} provides the component {name!r}, which "
                          f"{self.component_plugins[name]!r} provides already; its own is ignored")
                    continue
                self.components[name], self.component_plugins[name] = load, plugin

    def _load_entry_points(self) -> None:
        """Import each `glide.samplers` entry point; one that fails is skipped with a warning naming it.

        (pluggy's load_setuptools_entrypoints stops at the first failure, taking every plugin with it.)
        """
        for entry in metadata.entry_points(group=hookspecs.PROJECT):
            try:
                plugin = entry.load()
            except Exception as e:  # any error inside a third-party import: report it, keep the rest
                _warn(f"sampler plugin {entry.name!r} ({entry.value}) failed to import and is left out: "
                      f"{type(e).__name__}: {e}")
                continue
            if self.pm.is_registered(plugin):   # the built-ins, advertised by this project's own entry points
                continue
            name = entry.name if self.pm.get_plugin(entry.name) is None else f"{entry.name} ({entry.value})"
            try:
                self.pm.register(plugin, name=name)
            except Exception as e:  # pluggy rejects hooks it does not know or with the wrong arguments
                _warn(f"sampler plugin {entry.name!r} ({entry.value}) does not fit the hooks and is left out: {e}")

    def _results(self, hook: str):
        """(plugin name, result) of each plugin's implementation of `hook`, built-ins first; one that raises
        is left out with a warning."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        builtin_names = [m.__name__ for m in BUILTINS]
        impls.sort(key=lambda impl: builtin_names.index(impl.plugin_name) if impl.plugin_name in builtin_names
                   else len(builtin_names))
        for impl in impls:
            try:
                yield impl.plugin_name, impl.function()
            except Exception as e:
                _warn(f"sampler plugin {impl.plugin_name!r}: {hook}() raised {type(e).__name__}: {e}; left out")

    def _collect(self, hook: str, kind: str, check) -> Dict[str, object]:
        found, owner = {}, {}
        for plugin_name, plugins in self._results(hook):
            for plugin in plugins or []:
                try:
                    check(plugin)
                except SamplerError as e:
                    _warn(f"sampler plugin {plugin_name!r}: {e}; left out")
                    continue
                if plugin.name in found:
                    _warn(f"sampler plugin {plugin_name!r} registers the {kind} {plugin.name!r}, which "
                          f"{owner[plugin.name]!r} registers already; the first one is kept")
                    continue
                found[plugin.name], owner[plugin.name] = plugin, plugin_name
        return dict(sorted(found.items()))

    @staticmethod
    def _check_common(plugin, kind: str, method: str) -> None:
        name = getattr(plugin, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise SamplerError(f"a {kind} ({type(plugin).__name__}) has no name")
        if not isinstance(getattr(plugin, "description", None), str):
            raise SamplerError(f"{kind} {name!r} has no description (a str)")
        params = getattr(plugin, "params", None)
        if not isinstance(params, (list, tuple)) or not all(isinstance(p, Param) for p in params):
            raise SamplerError(f"{kind} {name!r}: params must be a list of samplers.Param")
        if not callable(getattr(plugin, method, None)):
            raise SamplerError(f"{kind} {name!r} has no {method}() method")

    @classmethod
    def _check_step_rule(cls, rule) -> None:
        """name, description, params and sample(); `timesteps`, when present, callable."""
        cls._check_common(rule, "step rule", "sample")
        if hasattr(rule, "timesteps") and not callable(rule.timesteps):
            raise SamplerError(f"step rule {rule.name!r}: timesteps must be a method")

    @classmethod
    def _check_strategy(cls, strategy) -> None:
        """name, description, params and prepare(); the declared scale one of its params; `requires` a tuple of names."""
        cls._check_common(strategy, "guidance strategy", "prepare")
        scale = getattr(strategy, "scale", None)
        if scale is not None and scale not in {p.name for p in strategy.params}:
            raise SamplerError(f"guidance strategy {strategy.name!r} declares scale={scale!r}, "
                               "which is not one of its params")
        requires = getattr(strategy, "requires", ())
        if isinstance(requires, str) or not all(isinstance(r, str) for r in requires):
            raise SamplerError(f"guidance strategy {strategy.name!r}: requires must be a tuple of component "
                               f"names, got {requires!r}")

    @staticmethod
    def scale_of(strategy):
        """The Param that is `strategy`'s guidance scale, or None."""
        name = getattr(strategy, "scale", None)
        return next((p for p in strategy.params if p.name == name), None)

    @staticmethod
    def requires_of(strategy) -> tuple:
        return tuple(getattr(strategy, "requires", ()))

    def step_rule(self, name: str):
        if name not in self.step_rules:
            raise SamplerError(f"unknown step rule {name!r}; available: {', '.join(self.step_rules)}")
        return self.step_rules[name]

    def guidance_strategy(self, name: str):
        if name not in self.guidance:
            raise SamplerError(f"unknown guidance strategy {name!r}; available: {', '.join(self.guidance)}")
        return self.guidance[name]

    def describe(self) -> dict:
        """Every plugin's name, description and parameters (what the UI and CLI build controls from)."""
        def info(p):
            return {"name": p.name, "description": p.description, "params": [q.describe() for q in p.params]}

        def strategy_info(p):
            return {**info(p), "scale": getattr(p, "scale", None), "requires": list(self.requires_of(p))}

        return {"step_rules": [info(p) for p in self.step_rules.values()],
                "guidance": [strategy_info(p) for p in self.guidance.values()],
                "components": sorted(self.components)}


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (call `get_registry.cache_clear()` after installing a plugin)."""
    return Registry()

