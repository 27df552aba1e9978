"""Generates the CLI reference from the ``actorq`` command itself, at build time.

A page holding the marker ``<!-- actorq-cli-reference -->`` gets, in its place, one section per
subcommand with its ``--help`` text, so the reference cannot drift from the command. Commands
are read from the click group; a subcommand that hands its arguments to an argparse parser
(``actorq sim`` once did) gets that parser's help instead.
"""

from __future__ import annotations

import argparse
from typing import Any

import click

MARKER = "<!-- actorq-cli-reference -->"
WIDTH = 96


def _help_block(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```\n"


def _argparse_help(name: str) -> str | None:
    """The help of a subcommand that parses its own arguments with argparse, if it is one."""
    if name != "sim":
        return None
    from actors.sim import lowlevel

    build_parser = getattr(lowlevel, "build_parser", None)
    if build_parser is None:
        return None
    parser: argparse.ArgumentParser = build_parser()
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    return parser.format_help()


def _sections(command: click.Command, ctx: click.Context, depth: int) -> list[str]:
    out: list[str] = []
    heading = "#" * min(depth, 6)
    if depth > 1:
        out.append(f"{heading} `{ctx.command_path}`\n")
    own = any(isinstance(param, click.Option) for param in command.params)
    argparse_help = None if own else _argparse_help(command.name or "")
    out.append(_help_block(argparse_help or command.get_help(ctx)))
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx, max_content_width=WIDTH)
            out.extend(_sections(sub, sub_ctx, depth + 1))
    return out


def render() -> str:
    """The reference of every ``actorq`` command, as Markdown."""
    from actors.cli import main

    ctx = click.Context(main, info_name="actorq", max_content_width=WIDTH, terminal_width=WIDTH)
    return "\n".join(_sections(main, ctx, 1))


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs hook: replace the marker with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
