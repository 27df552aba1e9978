"""Teaches the API reference how actorq writes attrs classes and documents their fields.

Two things griffe does not know by itself:

* **attrs signatures.** A class decorated with ``attrs.frozen`` / ``attrs.define`` (or the
  ``attr`` spellings) gets an ``__init__`` built from its annotated fields, inherited ones
  first, honouring ``kw_only``, ``init=False``, ``default=`` and ``factory=``, so the reference
  shows ``WorkerConfig(*, lease_ttl: float = 10.0, ...)`` instead of no signature at all.
* **Field comments.** Fields and constants are documented with comments rather than
  docstrings: ``#:`` lines right above (``#: Seconds a lease lives unrenewed.``), a comment at
  the end of the line (``job_id: int  # the job's id``), or, in a class body, plain ``#`` lines
  right above. Those become the attribute's docstring when it has none.
"""

from __future__ import annotations

import io
import tokenize
from typing import Any

import griffe

ATTRS_DECORATORS = frozenset(
    {
        "attrs.define",
        "attrs.frozen",
        "attrs.mutable",
        "attr.define",
        "attr.frozen",
        "attr.mutable",
        "attr.s",
        "attr.attrs",
    }
)
FIELD_FUNCTIONS = frozenset({"attrs.field", "attr.ib", "attr.attrib", "attr.field"})
# Trailing comments that speak to tools, not readers.
PRAGMAS = ("type:", "noqa", "fmt:", "pragma", "pyright:", "allowed:")


def _call_arguments(expr: object) -> dict[str, Any]:
    if not isinstance(expr, griffe.ExprCall):
        return {}
    arguments: dict[str, Any] = {}
    for argument in expr.arguments:
        name = getattr(argument, "name", None)
        if name is not None:
            arguments[name] = argument.value
    return arguments


def _attrs_decorator(cls: griffe.Class) -> griffe.Decorator | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in ATTRS_DECORATORS:
            return decorator
    return None


def _is_field(member: griffe.Object | griffe.Alias) -> bool:
    if not isinstance(member, griffe.Attribute) or member.annotation is None:
        return False
    if "property" in member.labels:
        return False
    # A ClassVar is a class attribute only, never an instance field.
    return not ("class-attribute" in member.labels and "instance-attribute" not in member.labels)


def _fields(cls: griffe.Class, kw_only: bool) -> list[griffe.Parameter]:
    parameters = []
    for member in cls.members.values():
        if not _is_field(member):
            continue
        assert isinstance(member, griffe.Attribute)
        value = member.value
        field_args: dict[str, Any] = {}
        if isinstance(value, griffe.ExprCall) and value.canonical_path in FIELD_FUNCTIONS:
            field_args = _call_arguments(value)
        if str(field_args.get("init", "True")) == "False":
            continue
        default: Any
        if "default" in field_args:
            default = field_args["default"]
        elif "factory" in field_args:
            default = griffe.ExprCall(function=field_args["factory"], arguments=[])
        elif field_args:
            default = None
        else:
            default = value
        keyword_only = kw_only or str(field_args.get("kw_only", "False")) == "True"
        name = str(field_args.get("alias", "")).strip("'\"") or member.name.lstrip("_")
        parameters.append(
            griffe.Parameter(
                name,
                annotation=member.annotation,
                kind=(
                    griffe.ParameterKind.keyword_only
                    if keyword_only
                    else griffe.ParameterKind.positional_or_keyword
                ),
                default=default,
                docstring=member.docstring,
            )
        )
    return parameters


def _set_init(cls: griffe.Class) -> None:
    decorator = _attrs_decorator(cls)
    if decorator is None or "__init__" in cls.members:
        return
    arguments = _call_arguments(decorator.value)
    if str(arguments.get("init", "True")) == "False":
        return
    try:
        mro = list(reversed(cls.mro()))
    except ValueError:
        mro = []
    by_name: dict[str, griffe.Parameter] = {}
    for klass in [*mro, cls]:
        klass_decorator = _attrs_decorator(klass)
        if klass_decorator is None:
            continue
        kw_only = str(_call_arguments(klass_decorator.value).get("kw_only", "False")) == "True"
        for parameter in _fields(klass, kw_only):
            by_name[parameter.name] = parameter
    positional = [p for p in by_name.values() if p.kind is not griffe.ParameterKind.keyword_only]
    keyword = [p for p in by_name.values() if p.kind is griffe.ParameterKind.keyword_only]
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *positional,
            *keyword,
        ),
        returns="None",
    )
    cls.set_member("__init__", init)


def _comments(source: str) -> list[tuple[int, str]]:
    """(line index, text) of each comment in ``source``, or none if it does not tokenize."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []
    return [(t.start[0] - 1, t.string) for t in tokens if t.type == tokenize.COMMENT]


def _comment_docstring(attr: griffe.Attribute, lines: list[str]) -> str | None:
    if attr.lineno is None or attr.name.startswith("__"):
        return None
    first = attr.lineno - 1
    above: list[str] = []
    index = first - 1
    while index >= 0 and lines[index].strip().startswith("#"):
        above.insert(0, lines[index].strip())
        index -= 1
    marked = [line[2:].strip() for line in above if line.startswith("#:")]
    if marked:
        return " ".join(marked)
    if not isinstance(attr.parent, griffe.Class):
        return None
    last = (attr.endlineno or attr.lineno) - 1
    statement = "\n".join(line.strip() for line in lines[first : last + 1])
    for row, text in _comments(statement):
        body = text.lstrip("#").strip()
        if row in (0, last - first) and body and not body.startswith(PRAGMAS):
            return body[0].upper() + body[1:]
    plain = [line.lstrip("#").strip() for line in above if not line.startswith(("# ---", "#:"))]
    if plain and len(plain) == len(above):
        return " ".join(plain)
    return None


def _walk(obj: griffe.Module | griffe.Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    lines: list[str] = []
    filepath = obj.filepath
    if not isinstance(filepath, list) and filepath in obj.lines_collection:
        lines = obj.lines_collection[filepath]
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if isinstance(member, griffe.Attribute) and member.docstring is None and lines:
            text = _comment_docstring(member, lines)
            if text:
                member.docstring = griffe.Docstring(text, lineno=member.lineno, parent=member)
        elif isinstance(member, griffe.Module | griffe.Class):
            _walk(member, seen)
    if isinstance(obj, griffe.Class):
        _set_init(obj)  # after the fields got their docstrings


class AttrsFields(griffe.Extension):
    """Adds attrs ``__init__`` signatures and comment-documented fields to the reference."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Run once the whole package is loaded."""
        _walk(pkg, set())
