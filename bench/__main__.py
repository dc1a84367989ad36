"""Entry point of `python -m bench` (and `make bench`)."""
import sys

from .cli import main

sys.exit(main())
