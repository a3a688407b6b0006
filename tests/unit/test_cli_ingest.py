"""``avatarstack ingest`` reads the types of the registered document parsers, a parser plugin's
included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from avatarstack.adapters.parsers import MarkdownParser, PlainTextParser, PypdfParser
from avatarstack.bootstrap.cli import CliContext, cli
from avatarstack.bootstrap.cli.ingest import collect_files
from avatarstack.plugins.manager import make_plugin_manager
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.documents import DocumentParser


def notes_parser() -> DocumentParser:
    """Plain text under a type of its own: ``.notes`` files."""
    parser = PlainTextParser()
    parser.name = "notes"
    parser.media_types = ("text/x-notes",)
    parser.extensions = (".notes",)
    return parser


class NotesPlugin:
    @hookimpl
    def register_document_parsers(self, register: Callable[[DocumentParser], None]) -> None:
        register(notes_parser())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "meeting.notes").write_text("The descaling interval is three months.\n")
    (folder / "readme.md").write_text("# Readme\n\nWarranty claims go to the Oslo centre.\n")
    (folder / "data.json").write_text("{}")
    return folder


def test_a_folder_is_searched_for_the_types_the_parsers_read(folder: Path) -> None:
    builtins = [PypdfParser(), PlainTextParser(), MarkdownParser()]
    assert collect_files([folder], builtins) == [folder / "readme.md"]
    assert collect_files([folder], [*builtins, notes_parser()]) == [
        folder / "readme.md",
        folder / "sub" / "meeting.notes",
    ]


def test_ingest_takes_the_files_of_a_parser_plugin(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVATARSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AVATARSTACK_DATABASE_URL", "memory://")
    monkeypatch.setenv("AVATARSTACK_KB__CHROMA_URL", "memory://")
    monkeypatch.setenv("AVATARSTACK_LOG_LEVEL", "warning")
    monkeypatch.setenv("COLUMNS", "200")
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("notes", NotesPlugin())])

    result = CliRunner().invoke(cli, ["ingest", str(folder)], obj=CliContext(plugin_manager=pm))

    assert result.exit_code == 0, result.output
    assert result.output.count("ingested") == 2, result.output
    assert "meeting.notes" in result.output
    assert "data.json" not in result.output


def test_without_a_parser_for_them_no_files_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATARSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AVATARSTACK_LOAD_PLUGINS", "")
    (tmp_path / "only.notes").write_text("notes")

    result = CliRunner().invoke(cli, ["ingest", str(tmp_path)])

    assert result.exit_code == 1
    assert "no files of the types the document parsers read (.pdf" in result.output
