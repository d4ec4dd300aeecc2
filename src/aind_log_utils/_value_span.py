"""Where the value of a ``key=value`` / ``key: value`` pair in free text ends.

:func:`value_span` gives the part of a text to mask after a secret-looking key's
separator (:mod:`._scrub` finds the keys): a quoted value to its closing quote, a
bracketed one to its closing bracket, a bare one after ``=`` up to a blank or a
plain end, after ``:`` to the end of its line, and in YAML over the lines
indented past its key (a wrapped value, a block scalar).
"""

from __future__ import annotations

import re

__all__ = ["QUOTES", "quote_end", "value_span"]

#: Where a bare (unquoted) value ends, after ``=`` and after ``:``.
_BARE_END_EQUALS = frozenset(" \t\r\n'\",;&)}]")
_BARE_END_COLON = frozenset("\r\n")
#: Of those, the ones that end a value only where the value plainly ends there:
#: before the next pair (``user=bob,password=x,host=db``, ``?token=x&page=2``,
#: ``{"api_key": 1, "b": 2}``), at the end of the text or before a blank, and for a
#: quote or a closing bracket also before a separator or another closer
#: (``f('token=x')``, ``{"msg": "token=x"}``). A password may hold them:
#: ``password=P,ssw0rd`` and ``password=P'ss&w0rd`` are masked whole.
_SOFT_ENDS = frozenset(",;&'\")}]")
_SOFT_END_RE = re.compile(
    r"""[,;&'")}\]]\s*["']?[A-Za-z_][\w.-]*["']?\s*[=:]"""  # the next pair
    r"""|[,;&'")}\]](?:\Z|(?=\s))"""  # the end, a blank
    r"""|['")}\]](?=[,;&'")}\]])"""  # a closer before a separator or a closer
)
#: A YAML block scalar's header (``key: |``, ``key: >-``): its value is on the lines
#: that follow, indented more than the key.
_BLOCK_HEADER_RE = re.compile(r"[|>][1-9+-]{0,2}[ \t]*(?:#[^\r\n]*)?\r?\n")
#: A bare value shorter than this is left: ``auth: ok``, ``token=5`` are not secrets.
_MIN_BARE = 4
_CLOSING = {"{": "}", "[": "]", "(": ")"}
QUOTES = frozenset("'\"")
#: How :func:`shlex.quote` writes a single quote inside a single-quoted word:
#: close the word, a double-quoted quote, open it again.
_SHLEX_QUOTE = "'\"'\"'"
#: What may follow the quote that closes a quoted word.
_AFTER_A_WORD = frozenset(" \t\r\n,;)]}")


def value_span(text: str, start: int, enclosing: str = "") -> tuple[int, int]:
    """Where the value after the separator at ``start - 1`` lies: what to mask.

    Quoted: between its quotes. Bracketed: between its brackets. Bare after
    ``=`` (``a=1&token=x``, ``k=v, k2=v2``): up to a blank, or one of
    ``,;&'")}]`` where the value plainly ends (:data:`_SOFT_END_RE`), so
    ``password=P,ssw0rd`` or ``password=P'ss&w0rd`` is masked whole.
    Bare after ``:`` (YAML, ``key: value`` lines): to the end of the line, as
    YAML reads it, so ``password: two words`` or ``password: P,ssw0rd!`` is masked
    whole, with the lines indented past its key (a wrapped value, a block scalar's
    ``key: |``); or, when the key opened with a quote (``{"api_key": 123456}``,
    ``-H "Authorization: Basic x" url``), up to that quote or one of ``,}]``. A
    bare value shorter than :data:`_MIN_BARE` is left (``auth: ok``).
    """
    ends = _BARE_END_EQUALS
    colon = start - 1 if text[start - 1] == ":" else -1
    if colon >= 0:
        # A quoted key (JSON, a dict's repr) or a pair in a quoted string: its quote
        # ends the value, and so do the separators of the structure around it.
        ends = _BARE_END_COLON | {enclosing, ",", "}", "]"} if enclosing else _BARE_END_COLON
    size = len(text)
    while start < size and text[start] in " \t":
        start += 1
    first = text[start : start + 1]
    if colon < 0 and enclosing:
        # key=value inside a quoted word ('password=two words', a list's repr, a
        # shlex-quoted argument): the value is the rest of the word, blanks included.
        end = _enclosed_end(text, start, enclosing)
        return (start, end) if end > start else (start, start)
    if first in QUOTES:
        # After a ":" (YAML) a quoted value may go on over lines indented past its
        # key; JSON and repr() never break a string over lines.
        column = _key_column(text, colon) if colon >= 0 else None
        return start + 1, quote_end(text, start + 1, first, column)
    if first in "|>" and colon >= 0:  # a block scalar, its key quoted or not
        header = _BLOCK_HEADER_RE.match(text, start)
        if header:
            return _indented_lines(text, header.end(), _key_column(text, colon))
    if first in _CLOSING:
        close = _bracket_end(text, start + 1, first)
        if text[close : close + 1] != _CLOSING[first]:
            end = close  # unclosed: all of its line is the value
        else:
            end = _bare_end(text, close + 1, ends)
            if end == close + 1:
                return start + 1, close
            # more after the bracket: all of it is the value
    else:
        end = _bare_end(text, start, ends)
    if colon >= 0 and not enclosing and end < size:
        # A YAML plain scalar goes on over the lines indented past its key.
        newline = text.find("\n", end)
        if newline != -1:
            first_line, last = _indented_lines(text, newline + 1, _key_column(text, colon))
            if last > first_line:
                end = last
    return (start, end) if end - start >= _MIN_BARE else (start, start)


def _enclosed_end(text: str, start: int, quote: str) -> int:
    """Where a value from ``start`` ends inside a word opened by ``quote`` before its key.

    At the quote that closes the word: not escaped by a backslash, and followed by
    a blank, the end, or one of ``,;)]}``; shlex's quoted quote (``'"'"'``) is part
    of the value. An unclosed word goes on to the end of its line.
    """
    size = len(text)
    pos = start
    while True:
        pos = text.find(quote, pos)
        if pos == -1:
            line_end = text.find("\n", start)
            return size if line_end == -1 else line_end
        if quote == "'" and text.startswith(_SHLEX_QUOTE, pos):
            pos += len(_SHLEX_QUOTE)
            continue
        backslashes = 0
        while pos - backslashes > start and text[pos - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes % 2 == 0 and (pos + 1 == size or text[pos + 1] in _AFTER_A_WORD):
            return pos
        pos += 1


def _bare_end(text: str, start: int, ends: frozenset[str] | set[str]) -> int:
    """Where a bare value from ``start`` ends.

    At a blank, or at a soft end where the value plainly ends (:data:`_SOFT_END_RE`).
    """
    end, size = start, len(text)
    while end < size:
        char = text[end]
        if char in ends and (char not in _SOFT_ENDS or _SOFT_END_RE.match(text, end)):
            break
        end += 1
    return end


def _indented_lines(text: str, start: int, key_column: int) -> tuple[int, int]:
    """The lines from ``start`` indented past ``key_column``: a YAML value's.

    Blank lines between them are included, and the first line that is not
    indented past the key ends them; empty (``(start, start)``) when the first
    non-blank line is not.
    """
    end, pos, size = start, start, len(text)
    while pos < size:
        line_end = text.find("\n", pos)
        line_end = size if line_end == -1 else line_end
        line = text[pos:line_end]
        if line.strip():
            if not _indented_past(line, key_column):
                break
            end = line_end - (line.endswith("\r"))
        pos = line_end + 1
    return (start, end) if end > start else (start, start)


def _key_column(text: str, colon: int) -> int:
    """The column of the key before the ``:`` at ``colon`` (YAML)."""
    line_start = text.rfind("\n", 0, colon) + 1
    key_start = colon
    while key_start > line_start and text[key_start - 1] not in " \t-":
        key_start -= 1
    return key_start - line_start


def _goes_on(text: str, newline: int, column: int) -> bool:
    """Whether the line after ``newline`` is blank or indented past ``column``."""
    end = text.find("\n", newline + 1)
    line = text[newline + 1 : len(text) if end == -1 else end]
    return not line.strip() or _indented_past(line, column)


def _indented_past(line: str, column: int) -> bool:
    """Whether ``line`` starts with more than ``column`` blanks."""
    return len(line) - len(line.lstrip(" \t")) > column


def quote_end(text: str, start: int, quote: str, column: int | None = None) -> int:
    """The index of the quote closing a string that starts at ``start``.

    A backslash escapes the next character, as in ``repr()`` and JSON; a doubled
    quote is one quote, as in YAML and SQL. With a ``column`` (a YAML key's), the
    string goes on over the lines that are blank or indented past it, as YAML
    writes a multi-line string; otherwise, or unclosed, it ends with its line:
    masking too much beats leaking the rest. In a single-quoted YAML string a
    backslash is itself: where reading it so ends the string later, that end is
    taken.
    """
    end = _quote_scan(text, start, quote, column, escapes=True)
    if quote == "'" and column is not None and "\\" in text[start:end]:
        end = max(end, _quote_scan(text, start, quote, column, escapes=False))
    return end


def _quote_scan(text: str, start: int, quote: str, column: int | None, *, escapes: bool) -> int:
    size = len(text)
    pos = start
    while pos < size:
        char = text[pos]
        if char == quote:
            if text[pos + 1 : pos + 2] != quote:
                return pos
            pos += 2  # YAML and SQL double a quote inside a quoted string
        elif char == "\n":
            if column is None or not _goes_on(text, pos, column):
                return pos
            pos += 1
        else:
            pos += 2 if escapes and char == "\\" else 1
    return size


def _bracket_end(text: str, start: int, opening: str) -> int:
    """The index of the bracket closing ``opening`` (just before ``start``).

    Quoted strings inside are skipped, so a bracket in a string does not count;
    a container may span lines (``pprint``). Unclosed, the value runs to the end
    of its line.
    """
    closing = _CLOSING[opening]
    depth = 1
    size = len(text)
    pos = start
    while pos < size:
        char = text[pos]
        if char in QUOTES:
            pos = quote_end(text, pos + 1, char) + 1
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    line_end = text.find("\n", start)
    return size if line_end == -1 else line_end
