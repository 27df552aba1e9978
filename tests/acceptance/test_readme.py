"""The README's code runs as pasted.

Every ```python block of README.md is one of:

* **complete**: pasted into a file of its own and run with this venv's python in an empty
  directory (so a store it opens lands there), it exits 0 within a minute without a traceback,
  and prints what its section says it prints. It runs on asyncio, as ``anyio.run`` does by
  default. A block of tests (it defines ``test_*`` functions, or its first line is
  ``# file: test_name.py``) is saved as a test module and run with pytest instead, as its
  reader would run it;
* **a fragment**: its first line is ``# fragment of examples/<file>.py``, and each of its lines
  appears, in order, in that example, which ``test_examples.py`` runs.

``make`` targets named in the "Two commands" section exist. ``examples/quickstart.py`` defines
the same App as the "Jobs in one screen" block.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FRAGMENT = re.compile(r"# fragment of (?P<path>examples/\S+\.py)\s*$")
TEST_FILE = re.compile(r"# file: (?P<name>test_\w+\.py)\s*$")


class Block(NamedTuple):
    """One fenced code block of the README."""

    language: str
    section: str  # the nearest heading above it
    line: int  # where its code starts in the file, 1-based
    code: str
    readme: str = "README.md"  # the file, from the repository's root

    @property
    def first_line(self) -> str:
        return self.code.split("\n", 1)[0]

    @property
    def id(self) -> str:
        where = "" if self.readme == "README.md" else f"{self.readme} "
        return f"{where}{self.section} (line {self.line})"


def _blocks(text: str, readme: str = "README.md") -> list[Block]:
    blocks: list[Block] = []
    section = "top"
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("```") and len(line) > 3:
            end = lines.index("```", i + 1)
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(line[3:].strip(), section, i + 2, code, readme))
            i = end
        i += 1
    return blocks


BLOCKS = _blocks(README)
PYTHON = [b for b in BLOCKS if b.language == "python"]
FRAGMENTS = [b for b in PYTHON if FRAGMENT.match(b.first_line)]
COMPLETE = [b for b in PYTHON if b not in FRAGMENTS]
#: The Python blocks of the examples' own READMEs (``examples/shop`` has its own tests).
EXAMPLE_PYTHON = [
    block
    for path in sorted((ROOT / "examples").glob("*/README.md"))
    if path.parent.name != "shop"
    for block in _blocks(path.read_text(), path.relative_to(ROOT).as_posix())
    if block.language == "python"
]

#: What a complete block of a section prints (each string on stdout).
EXPECTED_OUTPUT = {
    "Jobs in one screen": [
        "succeeded after 1 attempt(s)",
        "succeeded after 2 attempt(s)",
        "dead after 1 attempt(s)",
    ],
    "Cron": ["['recent']"],
    "Concurrency limits per key": ["at most 2 charges at once"],
    "Fair share between tenants": [
        "tiny's jobs ran 3 of the first 6: ['acme', 'tiny', 'acme', 'tiny', 'acme', 'tiny']"
    ],
    "Durable steps, sleeps and signals": ["receipt for ch_7, sent by DHL", "charged 1 time(s)"],
    "Operating: errors, retry, discard": [
        "newest [5, 4] then [3, 2, 1]",
        "why smtplib.SMTPError relay denied",
        "retried [1, 2, 3, 4, 5]",
    ],
    "Actors of your own": ["16\n", "crashed with ValueError('unlucky')", "25\n"],
}


def test_readme_has_python_blocks() -> None:
    """The README shows complete code and fragments (so the checks below check something)."""
    sections = {b.section for b in COMPLETE}
    assert set(EXPECTED_OUTPUT) <= sections
    assert FRAGMENTS


def _test_module_name(block: Block) -> str | None:
    """The file name to run the block under with pytest, or None for a plain script."""
    if match := TEST_FILE.match(block.first_line):
        return match["name"]
    defines_tests = any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.parse(block.code).body
    )
    return "test_readme_block.py" if defines_tests else None


def _run(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    if name := _test_module_name(block):
        path = cwd / name
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", path.name]
    else:
        path = cwd / "readme_block.py"
        command = [sys.executable, path.name]
    path.write_text(block.code)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


@pytest.mark.parametrize("block", COMPLETE, ids=lambda b: b.id)
def test_complete_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    """Saved to a file of its own and run in an empty directory, the block exits 0 cleanly."""
    result = _run(block, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
    for expected in EXPECTED_OUTPUT.get(block.section, []):
        assert expected in result.stdout, output


@pytest.mark.parametrize(
    "block", [b for b in COMPLETE if not _test_module_name(b)], ids=lambda b: b.id
)
def test_complete_block_calls_what_it_defines(block: Block) -> None:
    """A plain function the block defines is used by it (no ``main()`` that never runs)."""
    tree = ast.parse(block.code)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list:
            assert node.name in used, f"{block.id}: {node.name}() is defined, never called"


def _code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_example_readmes_quote_their_example() -> None:
    """An example's README shows its code as fragments of the example's files."""
    assert EXAMPLE_PYTHON, "no example README shows code: the fragment checks check nothing"
    assert all(FRAGMENT.match(b.first_line) for b in EXAMPLE_PYTHON), [
        b.id for b in EXAMPLE_PYTHON if not FRAGMENT.match(b.first_line)
    ]


@pytest.mark.parametrize("block", FRAGMENTS + EXAMPLE_PYTHON, ids=lambda b: b.id)
def test_fragment_is_in_its_example(block: Block) -> None:
    """Each line of a fragment appears, in order, in the example it says it comes from."""
    match = FRAGMENT.match(block.first_line)
    assert match is not None
    example = ROOT / match["path"]
    assert example.is_file(), f"{block.id}: {match['path']} does not exist"
    remaining = iter(_code_lines(example.read_text()))
    for line in _code_lines(block.code)[1:]:
        assert line in remaining, f"{block.id}: {line!r} is not in {match['path']} (in order)"


def _definitions(code: str) -> dict[str, str]:
    """Top-level classes, functions and assignments other than ``main``, docstrings dropped."""
    found: dict[str, str] = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == "main":
                continue
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                node.body = body[1:]
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign):
            found[ast.unparse(node.targets[0])] = ast.dump(node)
    return found


def test_quickstart_is_the_one_screen_app() -> None:
    """``examples/quickstart.py`` defines the App of "Jobs in one screen", unchanged."""
    (block,) = [b for b in COMPLETE if b.section == "Jobs in one screen"]
    readme = _definitions(block.code)
    quickstart = _definitions((ROOT / "examples" / "quickstart.py").read_text())
    assert {"app", "Welcome", "send_welcome"} <= set(readme)
    for name, dump in readme.items():
        assert quickstart.get(name) == dump, f"{name} differs between README and quickstart.py"


def test_two_commands_are_make_targets() -> None:
    """Every ``make <target>`` the "Two commands" section names is a target of the Makefile."""
    start = README.index("## Two commands")
    section = README[start : README.index("\n## ", start + 1)]
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", section))
    assert {"demo", "test"} <= named
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert named <= targets
