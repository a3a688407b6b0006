"""docs/plugins/hooks.md documents every hook with its exact signature, and no other hook.

A hook is a function in ``avatarstack.plugins.hookspecs`` carrying pluggy's ``avatarstack_spec``
marker attribute. Its section in hooks.md is the one under the level-2 heading ``## <name>``; the
section's code block must contain the line ``def <name>(<parameters>) -> <return>`` (a trailing
``:`` is allowed), rendered by ``inspect.signature`` with every annotation written as it is in the
source (hookspecs.py uses ``from __future__ import annotations``, so they are source text).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avatarstack.plugins import hookspecs
from avatarstack.plugins.markers import PROJECT

HOOKS_MD = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "hooks.md"
SPEC_MARKER = f"{PROJECT}_spec"
HEADING = re.compile(r"^## (.+?)\s*$")
FENCE = "```"


def hook_specs() -> dict[str, Callable[..., Any]]:
    return {
        name: obj
        for name, obj in vars(hookspecs).items()
        if inspect.isfunction(obj) and hasattr(obj, SPEC_MARKER)
    }


class _SourceText(str):
    """An annotation that ``inspect`` prints as written (without the quotes of a str)."""

    def __repr__(self) -> str:
        return str(self)


def _as_written(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty or not isinstance(annotation, str):
        return annotation
    return _SourceText(annotation)


def signature_line(function: Callable[..., Any]) -> str:
    signature = inspect.signature(function)
    signature = signature.replace(
        parameters=[
            p.replace(annotation=_as_written(p.annotation)) for p in signature.parameters.values()
        ],
        return_annotation=_as_written(signature.return_annotation),
    )
    return f"def {function.__name__}{signature}"


def documented_sections() -> dict[str, list[str]]:
    """The lines under each ``## `` heading of hooks.md, by heading text."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_code = False
    for line in HOOKS_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith(FENCE):
            in_code = not in_code
        heading = None if in_code else HEADING.match(line)
        if heading:
            name = heading.group(1)
            assert name not in sections, f"hooks.md has two sections named {name!r}"
            current = sections[name] = []
        elif current is not None:
            current.append(line)
    return sections


def code_lines(section: list[str]) -> list[str]:
    """The lines inside the fenced code blocks of a section."""
    lines: list[str] = []
    in_code = False
    for line in section:
        if line.startswith(FENCE):
            in_code = not in_code
        elif in_code:
            lines.append(line.strip())
    return lines


def test_the_hookspecs_module_defines_hooks() -> None:
    assert "register_routes" in hook_specs()


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_the_hook_is_documented_under_its_name_with_its_exact_signature(name: str) -> None:
    sections = documented_sections()
    assert name in sections, f"hooks.md needs a heading '## {name}'"
    expected = signature_line(hook_specs()[name])
    found = [line.rstrip(":") for line in code_lines(sections[name])]
    assert expected in found, f"the code block under '## {name}' must contain {expected!r}"


def test_the_hook_reference_documents_no_hook_that_does_not_exist() -> None:
    unknown = sorted(set(documented_sections()) - set(hook_specs()))
    assert not unknown, f"hooks.md documents hooks that do not exist: {unknown}"
