"""Teaches the API reference how actorq writes attrs classes and docstrings.

Three things griffe does not know by itself:

* **attrs signatures.** A class decorated with ``attrs.frozen`` / ``attrs.define`` (or the
  ``attr`` spellings) gets an ``__init__`` built from its annotated fields, inherited ones
  first, honouring ``kw_only``, ``init=False``, ``default=`` and ``factory=``, so the reference
  shows ``WorkerConfig(*, lease_ttl: float = 10.0, ...)`` instead of no signature at all.
* **Field comments.** Fields and constants are documented with comments rather than
  docstrings: ``#:`` lines right above (``#: Seconds a lease lives unrenewed.``), a comment at
  the end of the line (``job_id: int  # the job's id``), or, in a class body, plain ``#`` lines
  right above. Those become the attribute's docstring when it has none.
* **Sphinx markup in Google docstrings.** Roles such as ``:class:`Topology``` or
  ``:meth:`~transports.Transport.claim``` become links to the documented object (plain code
  when it is not documented), and a ``::`` paragraph ending introduces a code block.
"""

from __future__ import annotations

import html
import io
import re
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
# :role:`target`, :role:`~dotted.target` or :role:`title <target>`.
ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`<]+?)(?:\s*<([^`>]+)>)?`"
)


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


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path ``target`` names in ``obj``'s scope, or ``target`` itself."""
    head, dot, rest = target.partition(".")
    try:
        return obj.resolve(head) + dot + rest
    except Exception:  # griffe raises several kinds of resolution errors
        return target


def _link_roles(text: str, obj: griffe.Object) -> str:
    def link(match: re.Match[str]) -> str:
        tilde, written, explicit = match.groups()
        target = (explicit or written).strip().removesuffix("()")
        short = target.rsplit(".", 1)[-1] if tilde else target
        title = written.strip() if explicit else short
        identifier = html.escape(_resolve(obj, target), quote=True)
        # Optional: a name nobody documents renders as code instead of failing the build.
        return (
            f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code>'
            "</autoref>"
        )

    return ROLE.sub(link, text)


def _literal_blocks(text: str) -> str:
    """Turn each ``intro::`` paragraph ending and the indented block after it into a fence."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.rstrip()
        if not stripped.endswith("::") or stripped.endswith(":::"):
            out.append(line)
            index += 1
            continue
        intro = stripped[:-2].rstrip()
        indent = len(line) - len(line.lstrip())
        block_start = index + 1
        while block_start < len(lines) and not lines[block_start].strip():
            block_start += 1
        block_end = block_start
        while block_end < len(lines) and (
            not lines[block_end].strip()
            or len(lines[block_end]) - len(lines[block_end].lstrip()) > indent
        ):
            block_end += 1
        block = lines[block_start:block_end]
        while block and not block[-1].strip():
            block.pop()
        if not block:
            out.append(line)
            index += 1
            continue
        # "Example:" would open a Google section that reflows the code; say it another way.
        if intro.strip().lower() in ("example", "examples"):
            intro = " " * indent + "For example:"
        elif intro.strip():
            intro += ":"
        language = "text" if "Hierarchy" in intro or any("─" in b for b in block) else "python"
        # The fence sits at the intro's indentation, the code dedented to match it.
        extra = min(len(b) - len(b.lstrip()) for b in block if b.strip()) - indent
        code = [b[extra:] if b.strip() else "" for b in block]
        fence = " " * indent + "```"
        out.extend([intro, "", fence + language, *code, fence, ""])
        index = block_end
    return "\n".join(out)


def _markdown(obj: griffe.Object) -> None:
    docstring = obj.docstring
    if docstring is None:
        return
    value = docstring.value
    if "::" in value:
        value = _literal_blocks(value)
    if "`" in value:
        value = _link_roles(value, obj)
    docstring.value = value


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
        if isinstance(member, griffe.Module | griffe.Class):
            _walk(member, seen)
        else:
            _markdown(member)
    if isinstance(obj, griffe.Class):
        _set_init(obj)  # after the fields got their docstrings
    _markdown(obj)


class ActorqDocstrings(griffe.Extension):
    """Adds attrs signatures, comment-documented fields and Sphinx-markup links."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Run once the whole package is loaded."""
        _walk(pkg, set())
