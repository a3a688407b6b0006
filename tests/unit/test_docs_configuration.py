"""docs/configuration.md names every setting's environment variable, and only those.

The variable of a field is the settings' ``env_prefix`` plus the path of field names (the alias
where a field has one, e.g. ``mail.from``) joined by the nested delimiter, upper-cased:
``http.port`` → ``AVATARSTACK_HTTP__PORT``. The page must show each one in backticks.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from avatarstack.bootstrap.settings import Settings

CONFIGURATION_MD = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
PREFIX = Settings.model_config["env_prefix"]
DELIMITER = Settings.model_config["env_nested_delimiter"]
DOCUMENTED_VARIABLE = re.compile(rf"`({re.escape(PREFIX)}[A-Z0-9_]+)`")


def _nested_model(annotation: object) -> type[BaseModel] | None:
    """The model class of a section field (``Model`` or ``Model | None``), else None."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for candidate in typing.get_args(annotation) if union else (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def environment_variables(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[str]:
    """The environment variable of every leaf setting, walking nested sections."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        section = _nested_model(field.annotation)
        if section is not None:
            yield from environment_variables(section, (*path, key))
        else:
            yield (PREFIX + DELIMITER.join((*path, key))).upper()


def test_the_walk_finds_top_level_nested_and_aliased_settings() -> None:
    variables = set(environment_variables())
    assert {
        "AVATARSTACK_ENV",
        "AVATARSTACK_HTTP__PORT",
        "AVATARSTACK_MAIL__FROM",
        "AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID",
    } <= variables
    assert "AVATARSTACK_MAIL__FROM_" not in variables
    assert "AVATARSTACK_HTTP" not in variables  # sections are walked, not listed


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    text = CONFIGURATION_MD.read_text(encoding="utf-8")
    missing = [name for name in environment_variables() if f"`{name}`" not in text]
    assert not missing, f"add these settings to {CONFIGURATION_MD.name}: {missing}"


def test_the_configuration_reference_names_no_setting_that_does_not_exist() -> None:
    text = CONFIGURATION_MD.read_text(encoding="utf-8")
    unknown = sorted(set(DOCUMENTED_VARIABLE.findall(text)) - set(environment_variables()))
    assert not unknown, f"{CONFIGURATION_MD.name} documents settings that do not exist: {unknown}"
