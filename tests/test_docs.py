"""The README tells the truth about the code: every command, every variable, the layers; and the
code keeps the shape the README promises (no function over 60 lines)."""

from __future__ import annotations

import ast
import re

import click

from newsletter.cli import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "newsletter"
MODULES = sorted(path for path in PACKAGE.glob("*.py") if not path.name.startswith("__"))


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
        # settings are read as get("NAME") for NEWSLETTER_NAME
        if path.name == "config.py":
            read |= {
                f"NEWSLETTER_{name}"
                for name in re.findall(r'\bget\("(?!NEWSLETTER_)([A-Z_]+)"\)', text)
            }
    assert len(read) >= 20
    assert sorted(v for v in read if f"`{v}`" not in README) == []


def layers() -> list[set[str]]:
    """The Layout table's rows, top to bottom: the modules named on each."""
    section = README.split("## Layout", 1)[1]
    return [
        set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def imports_of(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:  # `from . import embed`; `from . import __version__` is the package's own
                names |= {alias.name for alias in node.names if alias.name != "__version__"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("newsletter."):
            names.add(node.module.split(".")[1])
    return names


def test_the_layout_table_names_every_module_and_imports_run_down_it():
    rows = layers()
    row_of = {name: n for n, row in enumerate(rows) for name in row}
    assert sorted(path.stem for path in MODULES) == sorted(row_of.keys() - {"migrations"})
    upward = [
        f"{path.stem} imports {name}"
        for path in MODULES
        for name in sorted(imports_of(path))
        if row_of[name] < row_of[path.stem]
    ]
    assert upward == []


def test_no_function_is_longer_than_60_lines():
    # (migrations are left as they were released)
    long = [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []
