"""Where each key of a TOML study file is: line numbers for error messages.

``tomllib`` returns values without positions, so :func:`key_lines` scans the text once more with a
small tokenizer that knows just enough TOML (tables, arrays of tables, dotted and quoted keys,
inline tables, multi-line arrays and strings) to map every key path to its line. It is only run
on text that ``tomllib`` has already accepted, so it need not diagnose malformed input.

A key path is a tuple: ``("factors", "batch_size")``, an array element
``("factors", "batch_size", 2)``, an array-of-tables entry ``("exclude", 0, "norm")``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from normlab.errors import NormlabError

KeyPath = tuple[str | int, ...]

_TOKEN = re.compile(
    r'(?P<mlbasic>""".*?""""{0,2})'
    r"|(?P<mlliteral>'''.*?''''{0,2})"
    r'|(?P<basic>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<literal>'[^'\n]*')"
    r"|(?P<comment>#[^\n]*)"
    r"|(?P<newline>\n)"
    r"|(?P<space>[ \t\r]+)"
    r"|(?P<punct>[\[\]{}=,])"
    r"|(?P<bare>[^\s\[\]{}=,#\"']+)",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    """``str`` (a quoted string), ``bare`` (key, number, boolean, date), ``punct`` or ``newline``."""
    text: str
    line: int


def _tokens(text: str) -> Iterator[_Token]:
    line = 1
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind in ("mlbasic", "mlliteral", "basic", "literal"):
            yield _Token("str", value.strip("\"'"), line)
        elif kind in ("newline", "punct", "bare"):
            yield _Token(kind, value, line)
        line += value.count("\n")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.position = 0
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def skip_newlines(self) -> None:
        while (token := self.peek()) is not None and token.kind == "newline":
            self.position += 1

    def key(self, end: str) -> tuple[list[str], int]:
        """Segments of a (dotted, possibly quoted) key up to the punctuation ``end``."""
        segments: list[str] = []
        line = self.peek().line  # type: ignore[union-attr]
        while not ((token := self.take()).kind == "punct" and token.text == end):
            if token.kind == "str":
                segments.append(token.text)
            else:
                segments.extend(part for part in token.text.split(".") if part)
        return segments, line

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while (token := self.peek()) is not None:
            if token.kind == "newline":
                self.take()
            elif token.kind == "punct" and token.text == "[":
                table = self.header()
            else:
                segments, line = self.key("=")
                self.record(table, segments, line)
                self.value((*table, *segments))
        return self.lines

    def header(self) -> KeyPath:
        self.take()
        is_array = (token := self.peek()) is not None and token.text == "["
        if is_array:
            self.take()
        segments, line = self.key("]")
        if is_array:
            self.take()  # the second "]"
        path = self.resolve(segments)
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], line)
        if is_array:
            index = self.array_tables.get(path, -1) + 1
            self.array_tables[path] = index
            self.lines.setdefault(path, line)
            path = (*path, index)
        self.lines[path] = line
        return path

    def resolve(self, segments: list[str]) -> KeyPath:
        # [exclude.sub] after [[exclude]] names a table inside the *latest* exclude entry.
        path: KeyPath = ()
        for position, segment in enumerate(segments, start=1):
            path = (*path, segment)
            if path in self.array_tables and position < len(segments):
                path = (*path, self.array_tables[path])
        return path

    def record(self, prefix: KeyPath, segments: list[str], line: int) -> None:
        for end in range(1, len(segments) + 1):
            self.lines.setdefault((*prefix, *segments[:end]), line)

    def value(self, path: KeyPath) -> None:
        token = self.take()
        if token.kind == "punct" and token.text == "[":
            index = 0
            while True:
                self.skip_newlines()
                if (element := self.peek()) is not None and element.text == "]":
                    self.take()
                    return
                self.lines[(*path, index)] = element.line  # type: ignore[union-attr]
                self.value((*path, index))
                index += 1
                self.skip_newlines()
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.take()
        elif token.kind == "punct" and token.text == "{":
            while True:
                if (inner := self.peek()) is not None and inner.text == "}":
                    self.take()
                    return
                segments, line = self.key("=")
                self.record(path, segments, line)
                self.value((*path, *segments))
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.take()
        else:
            # A scalar: one token, or several for a date-time written with a space.
            while (rest := self.peek()) is not None and rest.kind in ("bare", "str"):
                self.take()


def key_lines(text: str) -> dict[KeyPath, int]:
    """1-based line of every key, table header and array element of a valid TOML document."""
    return _Scanner(text).run()


def dotted(path: KeyPath) -> str:
    """``("factors", "batch_size", 1)`` -> ``factors.batch_size[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True)
class SpecOrigin:
    """The file a spec came from and the line of each of its keys."""

    source: str = "spec"
    """File name (or a label for a spec built from a dict)."""
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    """Key path -> 1-based line; empty when the spec did not come from a file."""

    def line(self, path: KeyPath) -> int | None:
        """Line of ``path``, else of its closest enclosing key or table that the file writes."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def error(self, path: KeyPath, message: str) -> NormlabError:
        """``FILE:LINE: KEY: message`` (``FILE: KEY: message`` when the line is unknown)."""
        line = self.line(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        return NormlabError(f"{where}: {dotted(path)}: {message}")
