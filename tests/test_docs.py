"""The README tells the truth about the code: every command, every variable, the layers; and the
code keeps the shape the README promises (no function over 60 lines)."""

from __future__ import annotations

import ast
import re

import click

from newsletter.cli import cli
from newsletter.config import VARIABLES, Settings, setting

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "newsletter"
MIGRATIONS = PACKAGE / "store" / "migrations"  # left as they were released
MODULES = sorted(
    path
    for path in PACKAGE.rglob("*.py")
    if MIGRATIONS not in path.parents and path.name not in ("__init__.py", "__main__.py")
)


def room_of(parts: list[str]) -> str:
    """A module's room: its folder under the package (`store/`), or itself at the top (`cli`)."""
    return f"{parts[0]}/" if len(parts) > 1 or (PACKAGE / parts[0]).is_dir() else parts[0]


def module_parts(path) -> list[str]:
    return list(path.relative_to(PACKAGE).with_suffix("").parts)


def commands(group: click.Group, prefix: str = "newsletter") -> list[str]:
    found = []
    for name, command in group.commands.items():
        found.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def test_every_command_is_in_the_readme():
    listed = commands(cli)
    assert len(listed) >= 12
    missing = [c for c in listed if not re.search(rf"`{re.escape(c)}(?=[ `])", README)]
    assert missing == []


def test_every_variable_the_code_reads_is_in_the_readme():
    read = set()
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"NEWSLETTER_[A-Z_]*[A-Z]", text))
    read |= {variable.variable for variable in VARIABLES}  # the settings' one table
    assert len(read) >= 20
    assert sorted(v for v in read if f"`{v}`" not in README) == []


def test_the_settings_table_fills_every_setting_once():
    fields = [variable.field for variable in VARIABLES]
    assert len(fields) == len(set(fields))
    settings = Settings()
    for variable in VARIABLES:
        setting(settings, variable.field)  # names a real field
    names = {variable.name for variable in VARIABLES}
    assert len(names) == len(VARIABLES)


def layers() -> list[set[str]]:
    """The Layout table's rows, top to bottom: the rooms named on each (`store/`, `cli`)."""
    section = README.split("## Layout", 1)[1]
    return [
        set(re.findall(r"`([a-z_]+/?)`", line.split("|")[1]))
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def imports_of(path) -> set[str]:
    """The rooms a module imports from (its own included)."""
    here = module_parts(path)[:-1]
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            target = here[: len(here) - (node.level - 1)] + (node.module or "").split(".")
            target = [part for part in target if part]
        elif (node.module or "").startswith("newsletter."):
            target = node.module.split(".")[1:]
        else:
            continue
        if target:
            rooms.add(room_of(target))
        else:  # `from . import __version__` is the package's own
            rooms |= {room_of([a.name]) for a in node.names if a.name != "__version__"}
    return rooms


def test_the_layout_table_names_every_room_and_imports_run_down_it():
    rows = layers()
    row_of = {name: n for n, row in enumerate(rows) for name in row}
    assert sorted({room_of(module_parts(path)) for path in MODULES}) == sorted(row_of)
    upward = [
        f"{path.relative_to(PACKAGE)} imports {room}"
        for path in MODULES
        for room in sorted(imports_of(path))
        if row_of[room] < row_of[room_of(module_parts(path))]
    ]
    assert upward == []


def test_the_layout_section_shows_the_tree():
    section = README.split("## Layout", 1)[1]
    for path in MODULES:
        assert f" {path.name} " in section or f" {path.name}\n" in section, path


def test_no_function_is_longer_than_60_lines():
    # (migrations are left as they were released)
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} "
        f"({node.end_lineno - node.lineno + 1} lines)"
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_no_module_outside_the_store_builds_sql():
    """Every query lives in `store/`: other rooms may name a session (a transaction they hold)
    and catch the database's errors, but build no statement."""
    builders = []
    for path in MODULES:
        if "store" in module_parts(path)[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                builders += [
                    f"{path.relative_to(PACKAGE)}: import {alias.name}"
                    for alias in node.names
                    if alias.name.split(".")[0] == "sqlalchemy"
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                allowed = {"sqlalchemy.exc": None, "sqlalchemy.orm": {"Session"}}
                if node.module not in allowed:
                    builders.append(f"{path.relative_to(PACKAGE)}: from {node.module}")
                elif allowed[node.module] is not None:
                    builders += [
                        f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                        for alias in node.names
                        if alias.name not in allowed[node.module]
                    ]
    assert builders == []
