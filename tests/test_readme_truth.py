"""The README's stated limits and settings are the code's: the limits table is compared
with the bounds of the OpenAPI schema (which tests/test_openapi_bounds.py holds to what
is enforced), and the settings table with `Settings` (every variable exists, every
setting is documented, every plain default is the real one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from service.app import create_app
from service.settings import Settings
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder, RecordingBackend

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")

_LOWER = ("minimum", "minItems", "minLength")
_UPPER = ("maximum", "maxItems", "maxLength")


def table_after(marker: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after `marker`."""
    start = README.index(marker)
    rows: list[list[str]] = []
    for line in README[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue
        rows.append(cells)
    return rows[1:]  # without the header


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(
        make_settings(tmp_path_factory.mktemp("readme")),
        embedder=HashingEmbedder(),
        backend=RecordingBackend(),
    )
    found: dict[str, Any] = app.openapi()["components"]["schemas"]
    return found


def bounds(field: dict[str, Any]) -> tuple[float | None, float | None]:
    """A field's lower and upper bound, looking through `anyOf` (optional fields)."""
    options = [field, *field.get("anyOf", [])]
    lower = [o[k] for o in options for k in _LOWER if k in o]
    upper = [o[k] for o in options for k in _UPPER if k in o]
    return (min(lower) if lower else None, max(upper) if upper else None)


def stated(bound: str) -> tuple[float | None, float]:
    if match := re.fullmatch(r"≤ (\d+(?:\.\d+)?)", bound):
        return None, float(match[1])
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\u2013(\d+(?:\.\d+)?)", bound)
    assert match, f"unreadable bound {bound!r}: write '≤ N' or 'A\u2013B' (an en dash)"
    return float(match[1]), float(match[2])


def test_limits_table_matches_the_schema(schemas: dict[str, Any]) -> None:
    rows = table_after("<!-- limits-table")
    assert len(rows) >= 15
    for label, bound, fields in rows:
        lower, upper = stated(bound)
        refs = re.findall(r"`(\w+)\.(\w+)`", fields)
        assert refs, f"{label}: names no schema field"
        for model, name in refs:
            field = schemas[model]["properties"][name]
            low, high = bounds(field)
            assert high == upper, f"{label}: README says {bound}, {model}.{name} allows {high}"
            if lower is not None:
                assert low == lower, f"{label}: README says {bound}, {model}.{name} from {low}"


def test_no_stale_limits_in_prose() -> None:
    """The numbers that drifted once (issue 13) are not stated anywhere else again."""
    assert "≤ 200 messages" not in README
    assert "`applied_preference` from `/context`" not in README


def _settings_rows() -> list[tuple[list[str], str]]:
    rows = table_after("## Settings")
    out = []
    for cells in rows:
        names = re.findall(r"`TAILOR_([A-Z0-9_]+)`", cells[0])
        assert names, cells
        out.append(([n.lower() for n in names], cells[1]))
    return out


def test_every_setting_is_documented_and_exists() -> None:
    documented = {name for names, _ in _settings_rows() for name in names}
    fields = set(Settings.model_fields)
    assert documented - fields == set(), "README documents settings that do not exist"
    assert fields - documented == set(), "settings missing from the README's table"


def _same(default: Any, cell: str) -> bool:
    if isinstance(default, bool):
        return cell == str(default).lower()
    if isinstance(default, int | float):
        return float(cell.replace(" ", "")) == float(default)
    return cell == str(default)


def test_plain_defaults_match() -> None:
    """Where the default cell holds one backticked literal per variable, it is the
    field's default; descriptive cells ("torch's", "unset") are left to the reader."""
    checked = 0
    for names, cell in _settings_rows():
        values = re.findall(r"`([^`]+)`", cell)
        if len(values) != len(names):
            continue
        for name, value in zip(names, values, strict=True):
            default = Settings.model_fields[name].default
            if default is None or isinstance(default, SecretStr) or "<" in value:
                continue
            if isinstance(default, Path):
                default = str(default) if str(default).startswith(".") else f"./{default}"
            assert _same(default, value), f"TAILOR_{name.upper()}: README {value!r}, {default!r}"
            checked += 1
    assert checked >= 30
