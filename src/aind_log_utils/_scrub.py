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
  after ``:`` to the end of its line (as YAML reads it);
* a secret named in prose, one blank (or "is", "was") before its value:
  ``using password hunter22``, when the value looks like a secret (a digit, a
  sign, a capital after a small letter; not a path or a URL).

Where a value ends is :mod:`._value_span`'s; registered secret values and the
walking of containers are :mod:`aind_log_utils._redact`'s.
"""

from __future__ import annotations

import re
from itertools import pairwise

from ._shapes import MASK, scrub_shapes
from ._value_span import QUOTES, quote_end, value_span

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
#: A long option and what separates it from its value: blanks, or ``', '`` in a
#: list's repr (then ``quote`` is the value's opening quote).
_FLAG_RE = re.compile(r"--(?P<name>[A-Za-z][\w-]*)(?:['\"],\s*(?P<quote>['\"])|[ \t]+)")
#: A secret named in prose, its value a blank (or "is", "was") after the word:
#: ``using password hunter22``, ``the API key is ab12-cd34``. Only a value that looks
#: like one is masked (:func:`_looks_secret`): ``password reset failed`` and ``token
#: expired`` are words.
_PROSE_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:pass(?:word|wd|phrase)|pwd|secret|token|api[ _-]?key|access[ _-]?key)"
    r"[ \t]+(?:(?:is|was)[ \t]+)?(?P<value>\S{6,})",
    re.IGNORECASE,
)
#: What may stand around a value in prose without being part of it (for the test
#: of whether it looks like a secret).
_PROSE_EDGES = "'\"()[]{}<>.,;:!?"
#: What is left visible around a masked value: quotes and brackets, and after it
#: sentence punctuation. A leading or trailing ``!`` or ``?`` is masked with the
#: value: passwords end in them more often than sentences do after a password.
_PROSE_LEAD = "'\"([{<"
_PROSE_TRAIL = "'\")]}>.,;:"
#: The shortest value in prose taken for a secret.
_MIN_PROSE = 6


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
    prose = " " in text or "\t" in text
    if pairs or flags:
        if not _may_name_a_secret(text):
            return text
        if pairs:
            text = _scrub_key_values(text)
        if flags:
            text = _scrub_flags(text)
    elif not prose or not _may_name_a_secret_in_prose(text):
        return text
    return _PROSE_RE.sub(_mask_prose, text) if prose else text


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
    return _names_a_prose_secret(f) or (
        "auth" in f or "cookie" in f or "credential" in f or "signature" in f or "bearer" in f
    )


def _may_name_a_secret_in_prose(text: str) -> bool:
    """False when no word of :data:`_PROSE_RE` can be in ``text``.

    Half the tests of :func:`_may_name_a_secret`: this one runs on nearly every message.
    """
    return _names_a_prose_secret(text.casefold())  # folded as the regex's IGNORECASE folds


def _names_a_prose_secret(folded: str) -> bool:
    """Whether casefolded text holds a word every name in :data:`_PROSE_RE` holds."""
    return (
        "pass" in folded
        or "pwd" in folded
        or "secret" in folded
        or "token" in folded
        or ("key" in folded)
    )


def _mask_prose(match: re.Match[str]) -> str:
    """A match of :data:`_PROSE_RE` with its value masked, if the value looks secret."""
    value = match["value"]
    secret = value.lstrip(_PROSE_LEAD).rstrip(_PROSE_TRAIL)
    if len(secret) < _MIN_PROSE or not _looks_secret(secret):
        return match[0]
    start = len(value) - len(value.lstrip(_PROSE_LEAD))
    head = match[0][: match.start("value") - match.start()]
    return f"{head}{value[:start]}{MASK}{value[start + len(secret) :]}"


def _looks_secret(value: str) -> bool:
    """Whether a word after a secret's name in prose looks like the secret.

    Without the punctuation around it, it holds a digit, a sign other than a
    hyphen or an apostrophe, or a capital after a small letter; a path
    (``/run/secrets/x``) or a URL is not one.
    """
    if value.startswith(("/", "~")) or "://" in value:
        return False
    word = value.strip(_PROSE_EDGES)
    if any(char.isdigit() or not (char.isalpha() or char in "-'") for char in word):
        return True
    return any(a.islower() and b.isupper() for a, b in pairwise(word))


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
        if quote in QUOTES:
            start += 0 if match["quote"] else 1
            end = quote_end(text, start, quote)
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
            if end_key < pos and text[end_key] in QUOTES:
                enclosing = text[end_key]
            else:
                enclosing = text[start_key] if text[start_key] in QUOTES else ""
            start_value, end_value = value_span(text, pos + 1, enclosing)
            if end_value > start_value:
                parts.append(text[done:start_value])
                parts.append(MASK)
                done = end_value
        pos = _next_separator(text, max(pos + 1, done))
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)
