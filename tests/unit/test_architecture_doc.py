"""docs/architecture.md is the newcomer's map: the paths it names exist, and its map section
shows every adapter and every port.

A module may be named with or without ``.py``, and either form matches a module ``X.py`` or a
package ``X/``, so the map stays right when a module grows into a package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "avatarstack"
DOC = ROOT / "docs" / "architecture.md"
LAYERS = ("core", "ports", "adapters", "plugins", "bootstrap", "testkit")
CONTEXTS = ("identity", "knowledge", "jobs", "avatars", "conversations", "operations")

# a path as the doc writes it: under the package (`ports/storage`, `avatarstack/core/jobs.py`)
# or from the repository's root (`tests/unit/test_jobs.py`, `docs/avatar.md`)
PATH = re.compile(
    r"(?:src/)?(?:avatarstack/)?(?:" + "|".join(LAYERS) + r")/[\w./]*"
    r"|(?:tests|docs)/[\w./-]*"
)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def map_section() -> str:
    text = doc_text()
    start = text.index("\n## Map\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def named_paths() -> list[str]:
    """Every path in an inline code span of the doc, and every path in the map's picture."""
    spans = re.findall(r"`([^`\n]+)`", doc_text())
    picture = "\n".join(re.findall(r"```\n(.*?)```", map_section(), flags=re.DOTALL))
    found = [m.group(0) for span in spans if (m := PATH.fullmatch(span.strip()))]
    found += PATH.findall(picture)
    return sorted({path.rstrip(".,;:") for path in found})


def resolve(path: str) -> Path:
    if path.split("/")[0] in ("tests", "docs", "src"):
        return ROOT / path
    return SOURCE / path.removeprefix("avatarstack/")


def exists(path: str) -> bool:
    target = resolve(path.rstrip("/"))
    if path.endswith("/"):
        return target.is_dir()
    stem = target.with_suffix("") if target.suffix == ".py" else target
    return target.exists() or stem.with_suffix(".py").is_file() or (stem / "__init__.py").is_file()


def mentioned(text: str, path: str) -> bool:
    return re.search(re.escape(path) + r"(?![\w])", text) is not None


def test_the_doc_names_paths() -> None:
    paths = named_paths()
    assert "ports/storage" in paths
    assert any(p.startswith("tests/") for p in paths)
    assert any(p.startswith("adapters/") for p in paths)


@pytest.mark.parametrize("path", named_paths())
def test_every_path_the_doc_names_exists(path: str) -> None:
    assert exists(path), f"docs/architecture.md names {path}, which is not in the repository"


def test_the_map_shows_every_adapter() -> None:
    section = map_section()
    adapters = sorted(
        item.stem
        for item in (SOURCE / "adapters").iterdir()
        if (item / "__init__.py").is_file() or (item.suffix == ".py" and item.stem != "__init__")
    )
    assert "http" in adapters
    missing = [name for name in adapters if not mentioned(section, f"adapters/{name}")]
    assert missing == [], f"add these adapters to the map of docs/architecture.md: {missing}"


def test_the_map_shows_every_port() -> None:
    section = map_section()
    ports = sorted(
        item.stem
        for item in (SOURCE / "ports").iterdir()
        if (item / "__init__.py").is_file() or (item.suffix == ".py" and item.stem != "__init__")
    )
    assert "storage" in ports
    missing = [name for name in ports if not mentioned(section, f"ports/{name}")]
    assert missing == [], f"add these ports to the map of docs/architecture.md: {missing}"


def test_the_map_has_the_picture_and_a_row_per_bounded_context() -> None:
    section = map_section()
    assert "```\n" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    for context in CONTEXTS:
        assert any(row.startswith(f"| {context}") for row in rows), context
