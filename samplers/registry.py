"""The plugin manager: built-ins plus every installed package advertising the `glide.samplers` entry point."""
from functools import lru_cache
from typing import Callable, Dict, List

import pluggy

from . import builtin_guidance, builtin_rules, hookspecs
from .base import SamplerError


class Registry:
    """Step rules and guidance strategies by name, collected through the pluggy hooks."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if load_entry_points:
            self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        # Built-ins arrive through entry points when the project is installed; from a plain
        # checkout they are registered here, the same modules either way.
        for module in (builtin_rules, builtin_guidance):
            if not self.pm.is_registered(module):
                self.pm.register(module, name=module.__name__)
        self.step_rules = self._collect(self.pm.hook.glide_step_rules(), "step rule")
        self.guidance = self._collect(self.pm.hook.glide_guidance_strategies(), "guidance strategy")
        for strategy in self.guidance.values():
            self._check_strategy(strategy)
        self.components: Dict[str, Callable] = {}
        for provided in self.pm.hook.glide_components():
            for name, load in (provided or {}).items():
                if name in self.components:
                    raise SamplerError(f"two plugins provide the component {name!r}")
                self.components[name] = load

    @staticmethod
    def _collect(results: List[list], kind: str) -> Dict[str, object]:
        found = {}
        for plugins in results:
            for plugin in plugins or []:
                if plugin.name in found:
                    raise SamplerError(f"two plugins register the {kind} {plugin.name!r}")
                found[plugin.name] = plugin
        return dict(sorted(found.items()))

    @staticmethod
    def _check_strategy(strategy) -> None:
        """The declared scale must be one of the strategy's parameters; `requires` a tuple of names."""
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
