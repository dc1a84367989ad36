"""Stand-ins shared by the backends' tests."""
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Tag:
    """A stand-in job payload: a label the fake runner reads, and the images it stands for."""

    label: object
    prompts: tuple = ("p",)
    seeds: tuple = (0,)
    key: object = None
    kind: ClassVar[str] = "generate"

    def batch_key(self):
        return self.key
