"""Options of a `clickjax` command read from a TOML file, with command-line flags taking precedence.

A configuration file sets options by their flag names without the leading dashes, such as

    model = "dbn"
    format = "baidu"
    train = ["part-00000.gz", "part-00001.gz"]
    learning-rate = 0.02
    validation = ["part-00002.gz"]

Keys may use dashes or underscores. A key that names no option of the command is an error that
names the key and the file. Values are checked by the option's type and choices, as on the
command line.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

__all__ = ["apply_config_file"]


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    actions = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        long_names = [name for name in action.option_strings if name.startswith("--")]
        if long_names:
            actions[long_names[0][2:]] = action
    return actions


def _convert(path: Path, key: str, action: argparse.Action, value):
    def one(item):
        if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
            if not isinstance(item, bool):
                raise ValueError(f"{path}: option {key!r} must be true or false, got {item!r}")
            return item
        if isinstance(item, bool | list | dict) or (action.type is int and not isinstance(item, int)):
            expected = "an integer" if action.type is int else "a number or text"
            raise ValueError(f"{path}: invalid value {item!r} for option {key!r}; expected {expected}")
        if action.type is not None:
            try:
                item = action.type(item)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: invalid value {item!r} for option {key!r}: {error}") from error
        if action.choices is not None and item not in action.choices:
            choices = ", ".join(str(choice) for choice in action.choices)
            raise ValueError(f"{path}: invalid value {item!r} for option {key!r}; expected one of {choices}")
        return item

    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if action.nargs == "+" and not items:
            raise ValueError(f"{path}: option {key!r} needs at least one value")
        return [one(item) for item in items]
    if isinstance(value, list | dict):
        raise ValueError(f"{path}: option {key!r} takes one value, got {value!r}")
    return one(value)


def apply_config_file(parser: argparse.ArgumentParser, path: Path) -> None:
    """Set the defaults of `parser`'s options from the TOML file `path`.

    Options set in the file stop being required, and flags given on the command line still
    override them, because they are parsed after the defaults are set.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is not valid TOML, has a key that names no option, or a value of the
        wrong type.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from error
    actions = _option_actions(parser)
    defaults = {}
    for raw_key, value in values.items():
        key = raw_key.replace("_", "-")
        action = actions.get(key)
        if action is None:
            known = ", ".join(sorted(actions))
            raise ValueError(f"{path}: unknown key {raw_key!r}; the options of this command are {known}")
        defaults[action.dest] = _convert(path, raw_key, action, value)
        action.required = False
    parser.set_defaults(**defaults)
