"""mypy rejects a misspelt or ill-typed task option and accepts the right ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

TARGET = Path(__file__).parent / "typecheck" / "task_options_reject_typos.py"


@pytest.mark.slow
def test_mypy_flags_exactly_the_marked_lines(tmp_path: Path) -> None:
    """Every ``# expect: code`` line has that error; no other line has any."""
    expected = {
        number: match.group(1)
        for number, line in enumerate(TARGET.read_text().splitlines(), start=1)
        if (match := re.search(r"# expect: ([\w-]+)", line))
    }
    stdout, stderr, _ = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(TARGET)]
    )
    assert not stderr
    found = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r":(\d+): error: .*\[([\w-]+)\]$", stdout, re.MULTILINE)
    }
    assert found == expected, stdout
    assert len(expected) >= 5  # the file does test something
