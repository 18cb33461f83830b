"""Read and validate the subscriber lists (YAML and CSV): every bad row is reported with its
file and line, and a list with any bad row gives nothing. Storing them is `subscribers`'s."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import NewsletterError, SubscriberListError
from ..records import Preferences
from ..text import CONTROL, clean_name
from .addresses import normalize_address

FIELDS = ("email", "name", "topics", "exclude", "max_papers", "frequency", "on_empty")
ON_EMPTY = ("skip", "trending")
FREQUENCIES = ("daily", "weekly")
DEFAULT_MAX_PAPERS = 10
MAX_PAPERS_LIMIT = 100
LIST_SUFFIXES = (".yaml", ".yml", ".csv")


@dataclass(frozen=True)
class SubscriberRow:
    email: str
    name: str
    preferences: Preferences
    source: str  # "file:line"


@dataclass
class _Problems:
    lines: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")


def list_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in LIST_SUFFIXES and not p.name.startswith(".")
            )
            if not found:  # a folder emptied by mistake must not delist everyone
                raise NewsletterError(
                    f"{path}: no subscriber lists (*.yaml, *.yml, *.csv) in this folder"
                )
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in LIST_SUFFIXES:
                raise NewsletterError(
                    f"{path}: not a subscriber list (expected .yaml, .yml or .csv)"
                )
            files.append(path)
        else:
            raise NewsletterError(f"{path}: no such file or folder")
    return files


def load_lists(paths: Sequence[Path]) -> list[SubscriberRow]:
    """Every valid row of the lists, or `SubscriberListError` naming every bad one."""
    problems = _Problems()
    rows: list[SubscriberRow] = []
    first_seen: dict[str, str] = {}
    for path in list_files(paths):
        for where, raw in _read_list(path, problems):
            row = _validate(raw, where, problems)
            if row is None:
                continue
            if row.email in first_seen:
                problems.add(
                    where, f"duplicate address {row.email} (first at {first_seen[row.email]})"
                )
                continue
            first_seen[row.email] = where
            rows.append(row)
    if problems.lines:
        raise SubscriberListError(problems.lines)
    return rows


def _read_list(path: Path, problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.add(str(path), "not UTF-8 text")
        return []
    if path.suffix.lower() == ".csv":
        return _read_csv(path, text, problems)
    return _read_yaml(path, text, problems)


class _Entry(dict[Any, Any]):
    """A YAML mapping that knows the line it starts on."""

    line: int = 0


# libyaml's parser when PyYAML was built with it (five times faster on a 10,000-reader list); the
# marks, and so the line numbers in every message, are the same.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ListLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """A safe YAML loader for subscriber lists, which take every value as written: scalars are
    text (`yes`, `no`, `~` and `1.5` stay those words; whole numbers are read by the fields that
    want them), a key given twice is an error, and aliases are refused (a list needs none, and an
    alias bomb of a few lines would grow to gigabytes)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # no implicit types: every scalar is text

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _refuse_aliases(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, "keys must be text", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        entry = _Entry(super().construct_mapping(node, deep=True))
        entry.line = node.start_mark.line + 1
        return entry


def _refuse_aliases(root: yaml.Node) -> None:
    """An alias makes the composed document share a node: the first node met twice is one. It is
    named by where it is used (a mapping's key, else the sequence holding it), not where the
    anchor is."""
    seen: set[int] = set()
    stack = [(root, root.start_mark)]
    while stack:
        node, used_at = stack.pop()
        if id(node) in seen:
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in subscriber lists", used_at
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack += [(value, key.start_mark), (key, key.start_mark)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, node.start_mark) for item in reversed(node.value)]


_ListLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _ListLoader.construct_mapping
)

EMPTY = ("", "~", "null", "Null", "NULL")  # YAML's ways of writing "no value" for a field


def _read_yaml(path: Path, text: str, problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = yaml.load(text, Loader=_ListLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        problems.add(where, f"invalid YAML: {reason}")
        return []
    if document is None or document in EMPTY:
        return []
    if isinstance(document, dict):
        extra = sorted(str(k) for k in document if k != "subscribers")
        if extra:
            problems.add(f"{path}, line 1", f"unknown key {extra[0]!r} (expected 'subscribers:')")
            return []
        entries = document.get("subscribers")
        entries = [] if entries in EMPTY else entries
    else:
        entries = document
    if not isinstance(entries, list):
        problems.add(f"{path}, line 1", "'subscribers' must be a list of entries")
        return []
    rows = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, _Entry):
            problems.add(
                f"{path}, entry {number}", "each subscriber must be a mapping with an email"
            )
            continue
        fields = {key: None if value in EMPTY else value for key, value in entry.items()}
        rows.append((f"{path}, line {entry.line}", fields))
    return rows


def _read_csv(path: Path, text: str, problems: _Problems) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    columns = [column.strip().lower() for column in header]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        problems.add(f"{path}, line 1", f"column {twice[0]!r} given twice")
        return []
    unknown = [c for c in columns if c not in FIELDS]
    if unknown:
        problems.add(
            f"{path}, line 1", f"unknown column {unknown[0]!r} (expected {', '.join(FIELDS)})"
        )
        return []
    missing = [c for c in ("email", "topics") if c not in columns]
    if missing:
        problems.add(f"{path}, line 1", f"missing column {missing[0]!r}")
        return []
    rows = []
    try:
        for cells in reader:
            where = f"{path}, line {reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                problems.add(where, f"{len(cells)} cells but {len(columns)} columns")
                continue
            fields: dict[str, Any] = dict(zip(columns, cells, strict=False))
            for name in LIST_FIELDS:
                if name in fields:
                    fields[name] = _csv_terms(fields[name])
            rows.append((where, fields))
    except csv.Error as error:
        problems.add(f"{path}, line {reader.line_num}", f"invalid CSV: {error}")
    return rows


LIST_FIELDS = ("topics", "exclude")


def _csv_terms(cell: str) -> list[str]:
    """A CSV list cell: terms separated by ';' (a comma is part of a term). A term in double
    quotes keeps a ';' of its own: `"C; C++";Rust` is two terms."""
    (terms,) = csv.reader([cell], delimiter=";", skipinitialspace=True) if cell.strip() else [[]]
    return terms


def _validate(raw: dict[str, Any], where: str, problems: _Problems) -> SubscriberRow | None:
    before = len(problems.lines)
    unknown = sorted(str(key) for key in raw if key not in FIELDS)
    if unknown:
        problems.add(where, f"unknown field {unknown[0]!r} (expected {', '.join(FIELDS)})")
    for name in ("email", "name", "max_papers", "frequency", "on_empty"):
        if isinstance(raw.get(name), dict | list):
            problems.add(where, f"{name} must be a single value, not a list or mapping")
            return None
    email = _email(raw.get("email"), where, problems)
    topics = _terms(raw.get("topics"), "topics", where, problems)
    exclude = _terms(raw.get("exclude"), "exclude", where, problems)
    if not topics:
        problems.add(where, "topics: at least one topic is required")
    max_papers = _max_papers(raw.get("max_papers"), where, problems)
    frequency = str(raw.get("frequency") or "daily").strip().lower()
    if frequency not in FREQUENCIES:
        problems.add(where, f"frequency {frequency!r} is not one of {', '.join(FREQUENCIES)}")
    on_empty = str(raw.get("on_empty") or "skip").strip().lower()
    if on_empty not in ON_EMPTY:
        problems.add(where, f"on_empty {on_empty!r} is not one of {', '.join(ON_EMPTY)}")
    if len(problems.lines) > before or email is None:
        return None
    return SubscriberRow(
        email=email,
        name=clean_name(raw.get("name")),
        preferences=Preferences(topics, exclude, max_papers, frequency, on_empty),
        source=where,
    )


def _email(value: Any, where: str, problems: _Problems) -> str | None:
    if value is None or not str(value).strip():
        problems.add(where, "email is required")
        return None
    try:
        return normalize_address(value)
    except NewsletterError as error:
        problems.add(where, str(error))
        return None


def _max_papers(value: Any, where: str, problems: _Problems) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_MAX_PAPERS
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        problems.add(where, f"max_papers {value!r} is not a whole number")
        return DEFAULT_MAX_PAPERS
    if not 1 <= number <= MAX_PAPERS_LIMIT:
        problems.add(where, f"max_papers {number} must be from 1 to {MAX_PAPERS_LIMIT}")
    return number


def _terms(value: Any, field: str, where: str, problems: _Problems) -> tuple[str, ...]:
    """Topics or exclusions: a list (YAML, or a CSV cell split by `_csv_terms`), or one YAML
    string separated by ';' or ','. Each term is taken as written; one with no word in it
    (`~`, `-`) is refused rather than guessed at."""
    if value is None:
        return ()
    if isinstance(value, dict):
        problems.add(where, f"{field} must be a list of words, not a mapping")
        return ()
    items = value if isinstance(value, list) else re.split(r"[;,]", str(value))
    terms: dict[str, str] = {}
    for item in items:
        if isinstance(item, dict | list):
            problems.add(where, f"{field}: each item must be text, not a list or mapping")
            continue
        term = " ".join(CONTROL.sub(" ", str(item)).split())
        if term and not re.search(r"\w", term):
            problems.add(where, f"{field}: {term!r} has no word in it")
        elif term:
            terms.setdefault(term.casefold(), term)
    return tuple(terms.values())
