"""Entry point of `python -m bench` (and `make bench`)."""
import sys
import time

_STARTED = time.monotonic()   # before torch's import: --budget-s counts the whole process

from .cli import main  # noqa: E402

sys.exit(main(clock_start=_STARTED))
