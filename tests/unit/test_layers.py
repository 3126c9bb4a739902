"""The dependency rules of the layout, checked on the source: a newcomer can trust them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "eodes_node"
NO_IO = {
    "asyncio",
    "aio_pika",
    "aiormq",
    "sqlalchemy",
    "sqlite3",
    "psycopg",
    "structlog",
    "logging",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_the_core_imports_only_the_core_errors_and_no_io(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top not in NO_IO, f"{path.name} imports {name}"
        if top == "eodes_node":
            assert name.startswith("eodes_node.core") or name == "eodes_node.errors", (
                f"{path.name} imports {name}"
            )


@pytest.mark.parametrize(
    "path",
    [PACKAGE / "runtime.py", *modules("service")],
    ids=lambda p: p.name,
)
def test_the_runtime_and_the_service_know_no_adapter(path: Path) -> None:
    for name in imports_of(path):
        assert name.split(".")[0] not in {"aio_pika", "aiormq", "sqlalchemy", "psycopg"}, name
        assert not name.startswith("eodes_node.adapters"), f"{path.name} imports {name}"
        assert not name.startswith("eodes_node.cli"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules("testing"), ids=lambda p: p.name)
def test_the_test_helpers_do_not_import_the_cli(path: Path) -> None:
    assert not any(n.startswith("eodes_node.cli") for n in imports_of(path))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_every_module_reads_in_one_sitting(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines"
