"""Secrets inside free text: secret-looking keys, and the shapes credentials take.

:func:`scrub_patterns` masks, in any string (a message, a traceback, a repr):

* credentials recognisable by their shape (:mod:`._shapes`): URL userinfo, bearer
  and basic tokens, curl's ``-u user:pass``, AWS access key ids, JSON web tokens,
  vendors' prefixed tokens (GitHub, Slack, Hugging Face, OpenAI, Anthropic, Stripe,
  Google), PEM private key blocks;
* the value after a secret-looking command-line option (``--password x``, and
  ``['--token', 'x']`` as a command's list repr shows it);
* the value of every ``key=value`` / ``key: value`` whose key looks secret
  (:func:`is_secret_key`). A quoted value is masked to its closing quote, whatever
  it holds (spaces, commas, ``&``, escaped quotes), as ``repr()`` of a dict, JSON
  and config dumps write it; a bracketed value (``{...}``, ``[...]``, ``(...)``) to
  its closing bracket; a bare value after ``=`` up to a blank, or up to one of
  ``,;&'")}]`` where the value plainly ends (the next ``key=``, a blank, the end),
  after ``:`` to the end of its line (as YAML reads it).

Registered secret values and the walking of containers are
:mod:`aind_log_utils._redact`'s.
"""

from __future__ import annotations

import re

from ._shapes import MASK, scrub_shapes

__all__ = ["MASK", "is_secret_key", "is_secret_option", "scrub_patterns"]


_SECRET_KEY_RE = re.compile(
    # "pass" alone, but not a filter's (bandpass, high_pass_hz, passband) nor a
    # count or a word (n_passes, passed, bypass, compass, passive, surpass).
    r"(?<!high)(?<!low)(?<!band)(?<!by)(?<!com)(?<!sur)"
    r"(?<!high_)(?<!low_)(?<!band_)(?<!high-)(?<!low-)(?<!band-)"
    r"pass(?!es|ed\b|ing|age|band|ive|through)|"
    r"pwd|secret(?!ion|ory|ary|ed\b)|api[-_]?key|apikey|"  # not secretion, secretory
    # "token", but not a language model's: a tokenizer, nor a count of tokens
    # (max_tokens, n_tokens, tokens_per_s, token_budget, token_ids).
    r"(?<!max_)(?<!min_)(?<!num_)(?<!^n_)(?<!_n_)(?<!total_)(?<!prompt_)(?<!input_)"
    r"(?<!output_)(?<!completion_)token(?!i[sz])(?!s?[-_]?(?:counts?|budget|limit|len|length"
    r"|per|ids?|type|usage)(?![a-z0-9]))|"
    # "auth", but not author, authority, authentication, nor a setting or a count
    # about it (auth_failures, auth_enabled, auth_type, auth_timeout_s, use_auth).
    r"(?<![a-z])(?<!use_)auth(?!or|ent)(?![-_]?(?:failures?|attempts?|errors?|counts?|enabled"
    r"|required|type|mode|method|provider|timeout\w*|retries)(?![a-z0-9]))|oauth|authorization|"
    r"cookie|credential|private[-_]?key|session[-_]?key|access[-_]?key|signature|"
    r"client[-_]?secret|bearer",
    re.IGNORECASE,
)
#: Keys that match the pattern above but are well-known non-secrets.
_NOT_SECRET_KEYS = frozenset(
    {"token_count", "tokens", "num_tokens", "author", "authors", "auth_method", "passed"}
)
_key_cache: dict[str, bool] = {}

#: What an exception's class name ends with: ``NoCredentialsError: Unable to ...``
#: is an error's message, not a secret under a key.
_NOT_A_KEY = ("Error", "Exception", "Warning")
_QUOTES_SPACE = " \t'\""
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
_QUOTES = frozenset("'\"")
#: A long option and what separates it from its value: blanks, or ``', '`` in a
#: list's repr (then ``quote`` is the value's opening quote).
_FLAG_RE = re.compile(r"--(?P<name>[A-Za-z][\w-]*)(?:['\"],\s*(?P<quote>['\"])|[ \t]+)")


def is_secret_key(key: str) -> bool:
    """Tell whether a mapping key looks like it names a secret.

    Args:
        key: the key, any case.

    Returns:
        True for keys such as ``password``, ``API_KEY``, ``authorization``.
    """
    cached = _key_cache.get(key)
    if cached is None:
        lowered = key.lower()
        cached = lowered not in _NOT_SECRET_KEYS and _SECRET_KEY_RE.search(lowered) is not None
        if len(_key_cache) < 4096:
            _key_cache[key] = cached
    return cached


def is_secret_option(arg: str) -> bool:
    """True for a command-line option naming a secret whose value comes next.

    ``--password``, ``--api-key`` (not ``--password=x``, which holds its value).
    """
    return arg.startswith("--") and "=" not in arg and is_secret_key(arg[2:])


def scrub_patterns(text: str) -> str:
    """Mask the credentials ``text`` holds in a recognisable shape (see the module).

    Args:
        text: any string.

    Returns:
        The string with each such credential replaced by :data:`MASK`.
    """
    text = scrub_shapes(text)
    pairs = "=" in text or ":" in text
    flags = "--" in text
    if (pairs or flags) and _may_name_a_secret(text):
        if pairs:
            text = _scrub_key_values(text)
        if flags:
            text = _scrub_flags(text)
    return text


def _may_name_a_secret(text: str) -> bool:
    """False when no word of ``_SECRET_KEY_RE`` can be in ``text``.

    Most text with a ``:`` (a time, ``Error: ...``) names no secret: a few
    substring tests spare it the walk over its separators (4 us for a short
    message on the reference VM; the regex itself, case-insensitive, 7 us).
    ``casefold`` folds as the regex's IGNORECASE does (the long s, the Kelvin sign).
    """
    f = text.casefold()
    # Every word of the pattern holds one of these; written out, the tests cost
    # half of what any() over a tuple of them did.
    return (
        "key" in f or "pass" in f or "token" in f or "secret" in f or "auth" in f
        or "pwd" in f or "cookie" in f or "credential" in f or "signature" in f
        or "bearer" in f
    )  # fmt: skip


def _scrub_flags(text: str) -> str:
    """Mask the value after a secret-looking command-line option.

    ``--password hunter22``, ``--token "a b"`` and a command's list repr,
    ``['--api-key', 'abcd1234']`` (``--name=value`` is a key/value pair already).
    A value that is itself an option (``--token --verbose``) is left.
    """
    parts: list[str] = []
    done = 0
    for match in _FLAG_RE.finditer(text):
        if match.start() < done or not is_secret_key(match["name"]):
            continue
        start = match.end()
        quote = match["quote"] or text[start : start + 1]
        if quote in _QUOTES:
            start += 0 if match["quote"] else 1
            end = _quote_end(text, start, quote)
        elif text.startswith("-", start):
            continue
        else:
            end = start
            while end < len(text) and not text[end].isspace():
                end += 1
        if end > start:
            parts += (text[done:start], MASK)
            done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _next_separator(text: str, start: int) -> int:
    colon = text.find(":", start)
    equals = text.find("=", start)
    if colon == -1:
        return equals
    if equals == -1:
        return colon
    return min(colon, equals)


def _scrub_key_values(text: str) -> str:
    """Mask the value of every ``key=value`` / ``key: value`` whose key looks secret.

    Plain string scanning from each separator: a regex here costs a scan of
    the whole string per separator, this costs the length of the key.
    """
    parts: list[str] = []
    done = 0
    pos = _next_separator(text, 0)
    while pos != -1:
        end_key = pos
        while end_key > done and text[end_key - 1] in _QUOTES_SPACE:
            end_key -= 1
        # The key is the word before the separator (after the last space or comma).
        start_key = (
            max(text.rfind(" ", done, end_key), text.rfind(",", done, end_key), done - 1) + 1
        )
        start_key = max(start_key, end_key - 64)
        key = text[start_key:end_key]
        if start_key < end_key and is_secret_key(key) and not key.endswith(_NOT_A_KEY):
            # A quoted key ({"api_key": 1}) or a pair inside a quoted string
            # ("Authorization: Bearer x" ...): that quote bounds a bare value.
            if end_key < pos and text[end_key] in _QUOTES:
                enclosing = text[end_key]
            else:
                enclosing = text[start_key] if text[start_key] in _QUOTES else ""
            start_value, end_value = _value_span(text, pos + 1, enclosing)
            if end_value > start_value:
                parts.append(text[done:start_value])
                parts.append(MASK)
                done = end_value
        pos = _next_separator(text, max(pos + 1, done))
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _value_span(text: str, start: int, enclosing: str = "") -> tuple[int, int]:
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
    if first in _QUOTES:
        # After a ":" (YAML) a quoted value may go on over lines indented past its
        # key; JSON and repr() never break a string over lines.
        column = _key_column(text, colon) if colon >= 0 else None
        return start + 1, _quote_end(text, start + 1, first, column)
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


def _quote_end(text: str, start: int, quote: str, column: int | None = None) -> int:
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
        if char in _QUOTES:
            pos = _quote_end(text, pos + 1, char) + 1
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
