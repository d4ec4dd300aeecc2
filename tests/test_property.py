"""Property: any extras give exactly one strict-JSON line, and no secret ever leaks."""

from __future__ import annotations

import json
import logging
import re
import shlex
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from aind_log_utils import _redact
from aind_log_utils._render import RECORD_ATTRS, Renderer
from aind_log_utils._render_values import value_caches

SECRET = "Zq9-registered-secret-Xv7"
HIDDEN = "Pw4-secretstr-value-Kd2"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=64),
    st.just(SECRET),
    st.builds(lambda s: f"pre {SECRET} post", st.text(max_size=5)),
    st.just(SecretStr(HIDDEN)),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=12), children, max_size=5),
    ),
    max_leaves=20,
)
keys = st.one_of(st.text(min_size=1, max_size=20), st.just(SECRET), st.just(f"k{SECRET}")).filter(
    lambda k: k not in RECORD_ATTRS
)


def _strict(line: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(token)

    return json.loads(line, parse_constant=refuse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extras=st.dictionaries(keys, values, max_size=8), message=st.text())
def test_any_extras_give_one_strict_json_line_without_secrets(
    extras: dict[str, Any], message: str
) -> None:
    _redact.register_secret(SECRET)
    record = logging.LogRecord(
        "prop", logging.INFO, __file__, 1, message + " " + SECRET, None, None
    )
    record.__dict__.update(extras)
    record.__dict__["pw_holder"] = {"password": HIDDEN}
    _, line = Renderer({"subject_id": "123456"}).render(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line.decode("utf-8")  # valid UTF-8
    parsed = _strict(text)
    assert isinstance(parsed, dict)
    assert parsed["level"] == "INFO" and "timestamp" in parsed
    # The record's own line, not a marker that it could not be rendered or serialised.
    assert parsed["message"].endswith(" " + _redact.MASK)
    assert SECRET not in text and HIDDEN not in text
    assert SECRET not in json.dumps(parsed) and HIDDEN not in json.dumps(parsed)


@settings(max_examples=300, deadline=None)
@given(created=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_cached_timestamp_is_format_timestamps_own(created: float) -> None:
    """The renderer's per-second cache spells every instant as format_timestamp does."""
    from aind_log_utils._render import format_timestamp

    renderer = Renderer()
    renderer._timestamp(created - 1.0)  # a cached second that is not this one
    assert renderer._timestamp(created) == format_timestamp(created)
    assert renderer._timestamp(created) == format_timestamp(created)  # now from the cache


_ARGS = st.one_of(st.integers(), st.floats(), st.text(max_size=20), st.none(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from(["%s", "%d items", "a %s b %r", "%5.2f%%", "%(k)s", "plain", "%x"]),
    args=st.one_of(st.lists(_ARGS, max_size=3).map(tuple), st.dictionaries(st.just("k"), _ARGS)),
)
def test_the_message_is_get_message_or_says_formatting_failed(template: str, args: Any) -> None:
    """%-formatting in the renderer gives getMessage()'s text, or never raises."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, template, (), None)
    record.args = args  # a tuple, or a mapping (as logging.info("%(k)s", {...}) leaves it)
    event = Renderer().collect(record)
    try:
        expected = record.getMessage()
    except Exception:
        assert "formatting failed" in event["message"]
    else:
        assert event["message"] == _redact.redact_text(expected)


_HEAD = ("timestamp", "level", "message", "logger", "lineno",
         "process", "processName", "thread", "threadName")  # fmt: skip
#: Field names that collide with the event's own keys, and ordinary ones.
_NAMES = st.sampled_from([*_HEAD, "funcName", "subject_id", "rig_id", "camera", "a", "b"])
_PLAIN_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    static=st.dictionaries(_NAMES, _PLAIN_VALUES, max_size=6),
    include=st.lists(st.sampled_from(["funcName", "module", "filename", "levelno"]), max_size=3),
    extras=st.dictionaries(
        _NAMES.filter(lambda k: k not in RECORD_ATTRS), _PLAIN_VALUES, max_size=4
    ),
)
def test_the_event_is_the_record_then_included_then_static_then_extras(
    static: dict[str, Any], include: list[str], extras: dict[str, Any]
) -> None:
    """Whatever the static fields (named like the event's own keys or not), the event
    is the one a fresh dict built in that order gives: same keys, order and values."""
    from aind_log_utils._render import format_timestamp

    renderer = Renderer(static, include_attrs=include)
    record = logging.LogRecord("prop", logging.INFO, __file__, 7, "m %s", ("x",), None, "f")
    record.__dict__.update(extras)
    for _ in range(2):  # the first record, and one after it (the caches warm)
        event = renderer.collect(record)
        expected: dict[str, Any] = {
            "timestamp": format_timestamp(record.created),
            "level": "INFO",
            "message": "m x",
            "logger": "prop",
            "lineno": 7,
            "process": str(record.process),
            "processName": record.processName,
            "thread": str(record.thread),
            "threadName": record.threadName,
        }
        for attr in include:
            expected[attr] = getattr(record, attr)
        expected.update(renderer.static_fields)
        Renderer._merge(expected, extras.items(), value_caches())
        assert list(event.items()) == list(expected.items())


# Passwords of any characters, as a config dump or a formatted message shows them.
passwords = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=8, max_size=24),
    st.lists(st.text("abcXYZ019,;&'\"!#:=", min_size=1, max_size=6), min_size=2, max_size=4)
    .map(" ".join)
    .filter(lambda pw: len(pw) >= 8),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=8, max_size=24),
)
dumps = st.sampled_from(
    [
        lambda pw: f"config: {dict(host='db', password=pw, port=5432)}",
        lambda pw: f"config: {json.dumps(dict(host='db', password=pw))}",
        lambda pw: f"connecting with {dict(auth=dict(user='bob', key=pw))} now",
        lambda pw: f"retry api_key={pw!r}, attempt 2",
        lambda pw: f"settings {[('x', 1), {'client_secret': pw}]}",
        lambda pw: "config:\n" + yaml.safe_dump({"db": {"host": "db", "password": pw}}),
        lambda pw: f"running {['tool', '--db-password', pw, '-v']}",
        # a key=value word quoted whole: a shlex-quoted argument, a list's repr
        lambda pw: f"running {shlex.join(['tool', f'password={pw}', '-v'])}",
        lambda pw: f"running {['tool', f'password={pw}', '-v']}",
    ]
)


@settings(max_examples=300, deadline=None)
@given(password=passwords, dump=dumps)
def test_a_secret_keyed_value_in_text_never_leaks(password: str, dump: Any) -> None:
    assume(password not in dump(""))  # not a part of the text around it
    text = dump(password)
    out = _redact.redact_text(text)
    around = dump("")
    # Not the password, and no piece of it: a partial mask leaks too.
    pieces = {password[i : i + 4] for i in range(len(password) - 3)}
    assert not {p for p in pieces if p in out and p not in around and p not in _redact.MASK}
    assert _redact.MASK in out
    assert out.startswith(text.split(" ", 1)[0])  # what is around it is kept


# Bare passwords (no blank, "=" or ":" in them, none ending in a character that may
# close a value), as a k=v list, a query string or a repr shows them: a comma,
# semicolon, quote, bracket or "&" inside one is part of it.
bare_passwords = st.text("abcXYZ019,;&'\")]}!#%+-./?@^_~", min_size=8, max_size=24).filter(
    lambda pw: (
        pw[-1] not in ",;&'\")]}"  # no "*" (the mask), no closer before another
        and pw[0] not in "'\""
        and not re.search(r"""['")}\]][,;&'")}\]]""", pw)
    )
)
bare_dumps = st.sampled_from(
    [
        lambda pw: f"login password={pw} ok",
        lambda pw: f"GET /x?user=bob&password={pw}&page=2",
        lambda pw: f"user=bob,password={pw}",
        lambda pw: f"a=1;api_token={pw};b=2",
        lambda pw: f"Config(password={pw}, user=bob)",
        lambda pw: f'cmd "password={pw}" next',
    ]
)


@settings(max_examples=300, deadline=None)
@given(password=bare_passwords, dump=bare_dumps)
def test_a_bare_secret_value_never_leaks_a_piece(password: str, dump: Any) -> None:
    assert_masked_whole(password, dump)


def assert_masked_whole(password: str, dump: Any) -> None:
    """No 4-character piece of ``password`` is left, and all around it is kept."""
    out = _redact.redact_text(dump(password))
    pieces = {password[i : i + 4] for i in range(len(password) - 3)}
    assert not {p for p in pieces if p in out and p not in dump("") and p not in _redact.MASK}
    assert out == dump(_redact.MASK)


# Passwords named in prose: a word with a digit in it, one blank after the name.
prose_passwords = st.text("abcXYZ019!#%+-./?@^_~&'()", min_size=8, max_size=24).filter(
    lambda pw: (
        any(c.isdigit() for c in pw)
        # quotes and brackets around it, and sentence punctuation after it, are left
        and pw[0] not in "'\"([{<" + "/~"
        and pw[-1] not in "'\")]}>.,;:"
        and "://" not in pw
    )
)
prose_dumps = st.sampled_from(
    [
        lambda pw: f"using password {pw} for the db",
        lambda pw: f"the API key is {pw}.",
        lambda pw: f"Token {pw} was refused",
        lambda pw: f"login with passwd {pw}",
        lambda pw: f"the secret was {pw}",
        lambda pw: f"access_key {pw} rotated",
    ]
)


@settings(max_examples=300, deadline=None)
@given(password=prose_passwords, dump=prose_dumps)
def test_a_secret_named_in_prose_never_leaks_a_piece(password: str, dump: Any) -> None:
    assert_masked_whole(password, dump)


@settings(max_examples=300, deadline=None)
@given(
    word=st.from_regex(r"[a-z]{3,14}", fullmatch=True),
    # "Token x" is an Authorization scheme's shape, masked whatever x is
    dump=prose_dumps.filter(lambda dump: not dump("").startswith("Token")),
)
def test_a_plain_word_after_a_secrets_name_is_kept(word: str, dump: Any) -> None:
    assert _redact.redact_text(dump(word)) == dump(word)


# Long passwords, spaces and line breaks in them, as PyYAML writes them in its styles
# (wrapped at 20 or 80 columns, quoted over several lines, or as a literal block).
long_passwords = st.text(
    st.characters(min_codepoint=32, max_codepoint=126) | st.just("\n"), min_size=30, max_size=300
).filter(lambda pw: pw.strip() and "*" not in pw)
yaml_styles = st.sampled_from([None, "'", '"', "|", ">"])


@settings(max_examples=300, deadline=None)
@given(password=long_passwords, style=yaml_styles, width=st.sampled_from([20, 80]))
def test_a_long_secret_in_any_yaml_style_never_leaks_a_piece(
    password: str, style: str | None, width: int
) -> None:
    def dump(value: str) -> str:
        data = {"db": {"host": "db", "password": value, "port": 5432}}
        return str(yaml.safe_dump(data, default_style=style, width=width))

    out = _redact.redact_text(dump(password))
    around = dump("")
    pieces = {password[i : i + 4] for i in range(len(password) - 3)}
    assert not {p for p in pieces if p in out and p not in around and p not in _redact.MASK}
    lines, kept = out.splitlines(), around.splitlines()
    assert lines[:2] == kept[:2] and lines[-1] == kept[-1]  # what is around it is kept


# Text with separators, quotes, options and (sometimes) a secret-looking word.
pieces = st.sampled_from(
    [" ", ":", "=", "--", "'", '"', ",", "{", "}", "\n", "pass", "PWD", "Token", "\u017fecret",
     "\u212aey", "api_key", "x", "12:30", "Error", "monkey", "auth", "bearer", "password",
     "pa\u017f\u017fword", " is ", "Ab12cd34!", "hunter22"]
)  # fmt: skip
texts = st.lists(st.one_of(pieces, st.text(max_size=4)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_the_quick_word_test_never_skips_a_secret_key(text: str) -> None:
    from aind_log_utils import _scrub

    # Whenever the quick test lets text through unscanned, the full scan would
    # have left it unchanged too.
    if not _scrub._may_name_a_secret(text):
        assert _scrub._scrub_key_values(text) == text
        assert _scrub._scrub_flags(text) == text
    if not _scrub._may_name_a_secret_in_prose(text):
        assert _scrub._PROSE_RE.sub(_scrub._mask_prose, text) == text
