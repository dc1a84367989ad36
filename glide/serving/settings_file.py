"""A TOML settings file for a server's command-line flags: `--config glide-serve.toml`.

Its keys are the flags' names without the dashes in front, its values what the flags take:

    port = 7860
    auth = ["alice:secret", "bob:hunter2"]      # a flag given more than once: a list
    max-per-user = 2
    trusted-proxy = ["127.0.0.1"]

Flags on the command line win over the file (a repeated flag given there replaces the file's list).
A key that is no flag, or a value of the wrong kind, stops the server with a message naming it.
"""
import argparse
import difflib
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

# What a TOML value may be for a flag of each `type=` (bool is an int in Python: refused for numbers).
_KINDS = {int: ((int,), "a whole number"), float: ((int, float), "a number"), Path: ((str,), "a path (a string)"),
          str: ((str,), "a string"), None: ((str,), "a string")}


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a TOML file of these options: keys are the flags' names without '--' "
                             "(max-per-user = 2); flags given on the command line win")


def _options(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """The flags a file may set, by name without the dashes (all but --help and --config)."""
    return {option[2:]: action for action in parser._actions for option in action.option_strings
            if option.startswith("--") and action.dest not in ("help", "config")}


def _given(action: argparse.Action, argv: Sequence[str]) -> bool:
    return any(token in action.option_strings or token.split("=", 1)[0] in action.option_strings for token in argv)


def _value(parser, where: str, key: str, action: argparse.Action, value):
    """`value` from the file as the flag `action` would have parsed it, or a parser error naming the key."""
    if action.nargs == 0:                      # store_true and the like
        if not isinstance(value, bool):
            parser.error(f"{where}: {key} = {value!r}: expected true or false")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(parser, where, key, action, item) for item in items]
    return _one(parser, where, key, action, value)


def _one(parser, where: str, key: str, action: argparse.Action, value):
    kinds, described = _KINDS.get(action.type, ((str,), "a string"))
    if isinstance(value, bool) or not isinstance(value, kinds):
        parser.error(f"{where}: {key} = {value!r}: expected {described}")
    try:
        converted = action.type(value) if action.type is not None else value
    except (TypeError, ValueError) as exc:
        parser.error(f"{where}: {key} = {value!r}: {exc}")
    if action.choices is not None and converted not in action.choices:
        parser.error(f"{where}: {key} = {value!r}: choose from {', '.join(map(str, action.choices))}")
    return converted


def apply(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> None:
    """When `argv` names a --config file, make its values the parser's defaults (so that the command line
    still overrides them); a file that cannot be read, or a bad key or value in it, is a parser error."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    path = pre.parse_known_args(argv)[0].config
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        parser.error(f"--config {path}: {exc.strerror or exc}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        parser.error(f"--config {path}: not a valid TOML file ({exc})")
    options = _options(parser)
    defaults = {}
    for key, value in data.items():
        action = options.get(key)
        if action is None:
            close = difflib.get_close_matches(key.replace("_", "-"), options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; the keys are: {', '.join(sorted(options))}"
            parser.error(f"{path}: unknown setting {key!r}{hint}")
        if isinstance(action, argparse._AppendAction) and _given(action, argv):
            continue                               # the command line's list replaces the file's
        defaults[action.dest] = _value(parser, str(path), key, action, value)
    parser.set_defaults(**defaults)
