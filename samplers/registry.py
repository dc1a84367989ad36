"""The plugin manager: built-ins plus every installed package advertising the `glide.samplers` entry point."""
from functools import lru_cache
from typing import Dict, List

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

    @staticmethod
    def _collect(results: List[list], kind: str) -> Dict[str, object]:
        found = {}
        for plugins in results:
            for plugin in plugins or []:
                if plugin.name in found:
                    raise SamplerError(f"two plugins register the {kind} {plugin.name!r}")
                found[plugin.name] = plugin
        return dict(sorted(found.items()))

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

        return {"step_rules": [info(p) for p in self.step_rules.values()],
                "guidance": [info(p) for p in self.guidance.values()]}


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (call `get_registry.cache_clear()` after installing a plugin)."""
    return Registry()
