"""The README's code is real: every Python block compiles, the actor example runs."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_has_python_blocks() -> None:
    """The README shows code (so the checks below check something)."""
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_compiles(index: int) -> None:
    """Each Python block is valid Python."""
    compile(BLOCKS[index], f"README block {index}", "exec")


def test_jobs_and_actor_blocks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The jobs block and the actor block run as written (the actor prints 16)."""
    monkeypatch.chdir(tmp_path)
    for block in (b for b in BLOCKS if "async def main" in b):
        namespace: dict[str, object] = {}
        exec(compile(block, "README", "exec"), namespace)
        anyio.run(namespace["main"])  # type: ignore[arg-type]
    assert "16" in capsys.readouterr().out
