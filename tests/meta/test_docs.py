"""The docs site builds in strict mode, and every page of ``docs/`` is reachable from the nav.

The build runs once per session (a few seconds), in a subprocess of this interpreter's own
``mkdocs``, into a temporary folder. Strict mode turns every warning into a failure: a broken
link or anchor, a page left out of the nav, a docstring the API reference cannot read, a
cross-reference to a name no namespace documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _nav_pages(entries: object) -> Iterator[str]:
    """Every page path named in a MkDocs ``nav`` (nested sections included)."""
    if isinstance(entries, str):
        if not entries.startswith(("http://", "https://")):
            yield entries
    elif isinstance(entries, list):
        for entry in entries:
            yield from _nav_pages(entry)
    elif isinstance(entries, dict):
        for value in entries.values():
            yield from _nav_pages(value)


def _nav() -> list[str]:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return list(_nav_pages(config["nav"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with ``mkdocs build --strict``; the build's output on failure."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_page_is_in_the_nav() -> None:
    """Each Markdown file under docs/ appears in mkdocs.yml's nav, and the nav names no
    missing file."""
    pages = {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if "hooks" not in path.relative_to(DOCS).parts
    }
    nav = _nav()
    assert len(nav) == len(set(nav)), f"a page is in the nav twice: {sorted(nav)}"
    assert pages - set(nav) == set(), "pages missing from the nav"
    assert set(nav) - pages == set(), "nav entries without a page"


def test_the_site_has_its_main_pages(site: Path) -> None:
    """The tutorial, the concepts, the how-to guides and the references are built."""
    for page in [
        "index.html",
        "tutorial/index.html",
        "concepts/leases/index.html",
        "concepts/delivery/index.html",
        "how-to/tune/index.html",
        "how-to/write-a-transport/index.html",
        "reference/cli/index.html",
        "reference/api/transports/index.html",
        "reference/api/actors.jobs/index.html",
    ]:
        assert (site / page).is_file(), f"{page} was not built"


def test_the_api_reference_is_generated_from_docstrings(site: Path) -> None:
    """The transport contract's methods and the App's API have their own documented entries."""
    transports_page = (site / "reference/api/transports/index.html").read_text(encoding="utf-8")
    for anchor in [
        "transports.Transport.claim",
        "transports.Transport.finalize",
        "transports.connect",
    ]:
        assert f'id="{anchor}"' in transports_page, anchor
    assert "Each job goes to exactly" in transports_page  # from claim's docstring
    jobs_page = (site / "reference/api/actors.jobs/index.html").read_text(encoding="utf-8")
    assert 'id="actors.jobs.App.enqueue"' in jobs_page
    # attrs fields get a signature and their comment as documentation.
    assert 'id="actors.jobs.WorkerConfig.lease_ttl"' in jobs_page
    # Sphinx roles in docstrings become links or code, never raw markup.
    for page in (site / "reference/api").glob("*/index.html"):
        text = page.read_text(encoding="utf-8")
        for role in (":class:", ":meth:", ":func:", ":mod:", ":exc:"):
            assert role not in text, f"{role} left in {page.parent.name}"


def test_the_cli_reference_covers_every_command(site: Path) -> None:
    """The generated CLI page has a section for each subcommand of ``actorq``."""
    import click

    from actors.cli import main

    assert isinstance(main, click.Group)
    page = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    assert "actorq-cli-reference" not in page, "the CLI reference was not generated"
    for name, command in main.commands.items():
        if not command.hidden:
            assert f"actorq {name}" in page, name
            assert "Usage: actorq " + name in page, name
