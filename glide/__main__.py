"""`python -m glide`: the command-line tool (see glide.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
