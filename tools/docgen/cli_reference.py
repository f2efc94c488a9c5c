"""The command reference (docs/cli.md) from the argparse parsers themselves and from the justfile's recipes.

Everything is rendered from the parsers' actions (flags, metavars, defaults, choices, help), not from argparse's
own help text, whose wrapping depends on the terminal and the Python version: the page is the same everywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tools.docgen.markdown import code, table
from tools.docgen.regions import RegionError

WIDTH = 110  # synopsis lines wrap here


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action.choices, dict) and action.option_strings == []:
            subactions = getattr(action, "_get_subactions")  # noqa: B009 (argparse's own, private: mypy does not know it)
            helps = {sub.dest: sub.help or "" for sub in subactions()}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def _shown(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions a reader needs: not --help, not the subcommand dispatcher."""
    return [
        a
        for a in parser._actions
        if not isinstance(a.choices, dict) and a.dest != "help" and a.help != argparse.SUPPRESS
    ]


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _flag(action: argparse.Action) -> str:
    """How the action is written: ``--listen HOST:PORT``, ``--early-checks | --no-early-checks``, ``NODE``."""
    if not action.option_strings:
        name = _metavar(action)
        if action.nargs == argparse.REMAINDER:
            return f"{name}..."
        if action.nargs == "*":
            return f"[{name} ...]"
        if action.nargs == "+":
            return f"{name} [{name} ...]"
        return name
    if isinstance(action, argparse.BooleanOptionalAction):
        return " | ".join(action.option_strings)
    flag = max(action.option_strings, key=len)
    return f"{flag} {_metavar(action)}" if _takes_value(action) else flag


def _synopsis_part(action: argparse.Action) -> str:
    written = _flag(action)
    if not action.option_strings:
        return written
    repeat = "..." if isinstance(action, argparse._AppendAction) else ""
    return written + repeat if action.required else f"[{written}]{repeat}"


def _synopsis(command: str, parser: argparse.ArgumentParser, skip: set[str]) -> str:
    actions = [a for a in _shown(parser) if a.dest not in skip]
    groups = getattr(parser, "_mutually_exclusive_groups", [])
    parts: list[str] = []
    grouped: set[int] = set()
    for action in actions:
        if id(action) in grouped:
            continue
        group = next((g for g in groups if action in g._group_actions), None)
        if group is not None and len(group._group_actions) > 1:
            members = [a for a in group._group_actions if a in actions]
            grouped.update(id(a) for a in members)
            inner = " | ".join(_flag(a) for a in members)
            parts.append(f"({inner})" if group.required else f"[{inner}]")
        else:
            parts.append(_synopsis_part(action))
    return _wrap(command, parts)


def _wrap(command: str, parts: Sequence[str]) -> str:
    lines, line = [], command
    indent = " " * (len(command.split(" ")[0]) + 1)
    for part in parts:
        if len(line) + 1 + len(part) > WIDTH and line.strip():
            lines.append(line)
            line = indent + part
        else:
            line += " " + part
    lines.append(line)
    return "\n".join(lines)


def _default(action: argparse.Action, root: Path) -> str:
    value = action.default
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if value else "off"
    if value is None or value is False or value == [] or value == argparse.SUPPRESS or action.nargs == 0:
        return ""
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(root.resolve()) if value.is_absolute() else value)
        except ValueError:
            return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse expands %(default)s and friends, and %% to %
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        text = text % params
    return text


def _options(actions: Sequence[argparse.Action], prog: str, root: Path) -> list[str]:
    rows = []
    for action in actions:
        flag = _flag(action)
        names = [s for s in action.option_strings if s != max(action.option_strings, key=len)]
        if names and not isinstance(action, argparse.BooleanOptionalAction):
            flag = ", ".join([*names, flag])
        if action.required and action.option_strings:
            flag += " (required)"
        default = _default(action, root)
        rows.append([code(flag), code(default) if default else "", _help(action, prog)])
    return table(["option", "default", "what it does"], rows)


def reference(parser: argparse.ArgumentParser, command: str, root: Path, heading: str = "###") -> str:
    """Markdown for ``command`` (``punch``, ``python -m netns``): its options common to every subcommand once,
    then each subcommand with its synopsis and a table of its options."""
    subcommands = _subcommands(parser)
    common: set[str] = set.intersection(*({a.dest for a in _shown(sub)} for _, _, sub in subcommands))
    top = [a for a in _shown(parser) if a.dest not in common]
    lines = [parser.description or "", ""]
    if top:
        lines += [f"`{command}` itself takes:", "", *_options(top, command, root), ""]
    shared = [a for a in _shown(subcommands[0][2]) if a.dest in common]
    if shared:
        lines += ["Every subcommand also takes:", "", *_options(shared, command, root), ""]
    for name, help_text, sub in subcommands:
        usage = _synopsis(f"{command} {name}", sub, common)
        lines += [f"{heading} `{command} {name}`", "", help_text[:1].upper() + help_text[1:] + ".", ""]
        lines += ["```", usage, "```", ""]
        options = [a for a in _shown(sub) if a.dest not in common]
        if options:
            lines += [*_options(options, f"{command} {name}", root), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def punch_reference(root: Path) -> str:
    from punch.cli import build_parser

    return reference(build_parser(), "punch", root)


def netns_reference(root: Path) -> str:
    from netns.cli import build_parser

    return reference(build_parser(), "python -m netns", root)


def _just() -> str:
    beside = Path(sys.executable).parent / "just"
    found = str(beside) if beside.exists() else shutil.which("just")
    if found is None:
        raise RegionError("`just` is not installed; `pip install -r requirements.txt` brings it (rust-just)")
    return found


def _recipes(root: Path) -> Iterator[tuple[str, str, str]]:
    dump = subprocess.run(
        [_just(), "--justfile", str(root / "justfile"), "--dump", "--dump-format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, recipe in sorted(json.loads(dump.stdout)["recipes"].items()):
        if recipe.get("private") or name.startswith("_"):
            continue
        arguments = []
        for parameter in recipe["parameters"]:
            written = parameter["name"].upper()
            if parameter["kind"] != "singular":
                written = f"{written}..."
            arguments.append(written if parameter.get("default") is None else f"[{written}]")
        yield name, " ".join(arguments), recipe.get("doc") or ""


def just_reference(root: Path) -> str:
    rows = [
        [code(f"just {name}"), code(arguments) if arguments else "", doc] for name, arguments, doc in _recipes(root)
    ]
    return "\n".join(table(["recipe", "arguments", "what it does"], rows)) + "\n"
