from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import pprint
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic.v1 import BaseModel as BaseModelV1
from pydantic.v1 import SecretStr as SecretStrV1

from aind_log_utils import redact, register_secret
from aind_log_utils._redact import MASK, MAX_ITEMS, MAX_STR_CHARS, is_secret_key, redact_text


class User(BaseModel):
    id: str
    email: str
    password: SecretStr
    inner_most_thoughts: SecretStr


class UserV1(BaseModelV1):
    id: str
    password: SecretStrV1


@dataclasses.dataclass
class Creds:
    user: str
    key: SecretStr


def test_secretstr_and_secretbytes_are_masked() -> None:
    assert redact(SecretStr("hunter2")) == MASK
    assert redact(SecretBytes(b"hunter2")) == MASK
    assert redact(SecretStrV1("hunter2")) == MASK


def test_secrets_inside_pydantic_models_v1_and_v2_and_dataclasses() -> None:
    user = User(
        id="1", email="a@b.c", password=SecretStr("pw-1"), inner_most_thoughts=SecretStr("x")
    )
    assert redact(user) == {
        "id": "1",
        "email": "a@b.c",
        "password": MASK,
        "inner_most_thoughts": MASK,
    }
    assert redact(UserV1(id="2", password=SecretStrV1("pw-2"))) == {"id": "2", "password": MASK}
    assert redact(Creds("bob", SecretStr("k"))) == {"user": "bob", "key": MASK}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "token",
        "api_key",
        "API-KEY",
        "Authorization",
        "cookie",
        "secret",
        "client_secret",
        "secret_key",
        "SECRETS",
        "credentials",
        "aws_secret_access_key",
        "private_key",
        "pass",
        "db_pass",
        "dbPass",
        "passwd",
        "passphrase",
        "auth",
        "x-auth",
        "oauth",
        "basic_auth",
        "HF_TOKEN",
        "session_token",
        "refresh_token",
        "id_token",
        "csrf_token",
        "auth_token",
        "auth_header",
        "x-auth",
    ],
)
def test_secret_looking_keys_any_case(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "value"}) == {key: MASK}


@pytest.mark.parametrize(
    "key",
    [
        "subject_id", "camera", "message", "tokens", "author", "status",
        # An electrophysiology pipeline's filters and counts are not passwords.
        "bandpass", "highpass", "lowpass", "high_pass_hz", "band_pass", "passband",
        "n_passes", "passed", "passing_score", "bypass", "compass", "passive",
        "authority", "authentication_method", "insulin_secretion", "secretory_cells",
        # A language model's settings: its tokenizer, and counts of tokens.
        "tokenizer", "tokenize", "tokenization", "max_tokens", "n_tokens", "num_tokens",
        "prompt_tokens", "token_budget", "tokens_per_s", "token_ids", "token_type",
        # Settings and counts about authentication.
        "auth_failures", "auth_attempts", "auth_enabled", "use_auth", "auth_type",
        "auth_timeout_s",
    ],
)  # fmt: skip
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}
    assert redact_text(f"{key}: 300-6000 Hz") == f"{key}: 300-6000 Hz"


def test_secret_keys_at_any_depth() -> None:
    data = {"a": [{"b": {"Api_Key": "k", "ok": 1}}], "c": ({"password": "p"},)}
    assert redact(data) == {"a": [{"b": {"Api_Key": MASK, "ok": 1}}], "c": [{"password": MASK}]}


def test_registered_secret_values_anywhere() -> None:
    register_secret("s3cr3t-value")
    assert redact_text("connect with s3cr3t-value now") == f"connect with {MASK} now"
    assert redact({"note": ["x s3cr3t-value y"]}) == {"note": [f"x {MASK} y"]}
    register_secret(SecretStr("another-one"))
    assert MASK in redact_text("another-one")


def test_register_secret_refuses_short_and_wrong_types() -> None:
    with pytest.raises(ValueError, match="secrets"):
        register_secret("abc")
    with pytest.raises(TypeError, match="secrets"):
        register_secret(12345)


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("postgres://alice:pa55w0rd@db:5432/x", "pa55w0rd"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "eyJhbGciOiJIUzI1NiJ9"),
        ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("password=topsecret123", "topsecret123"),
        (
            "session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ24 expired",
            "eyJzdWIiOiIxMjMifQ",
        ),
        ("git clone https://ghp_0123456789abcdefghijABCDEFGHIJ@github.com/x", "ghp_0123"),
        ("pushing with github_pat_11ABCDEFG0123456789_abcdefghijkl", "11ABCDEFG"),
        ("slack xoxb-1234567890-abcdefghij posted", "xoxb-1234567890"),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- end",
            "MIIEowIBAAKCAQEA",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk (cut)", "b3BlbnNzaC1rZXk"),
        ("curl -s -u admin:hunter22 https://api.x", "hunter22"),
        ("curl --user='bob@x.org:pa55word' https://x", "pa55word"),
        ("HF hf_abcdefghijklmnopqrstuvwxyzABCDEFGH used", "hf_abcdefghijklmnop"),
        ("key sk-proj-abcdEFGH1234ijklMNOP5678qrstUVWX90yz", "abcdEFGH1234"),
        ("key sk-ant-api03-AbCdEf0123456789AbCdEf0123456789", "AbCdEf0123456789"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
        ("maps AIzaSyA-1234567890abcdefghijklmnopqrstu", "1234567890abcdefghij"),
        ("gitlab glpat-abcdefghij1234567890 used", "abcdefghij1234567890"),
        # Passwords on command lines that take them after -p (glued, for MySQL)
        ("mysql -u root -pS3cretPw1 db", "S3cretPw1"),
        ("mysqldump -u root -p'S3 cret' db > x.sql", "cret"),
        ("mariadb -proot2 -e 'select 1'", "root2"),
        ("sshpass -p 'Sup3rSecret' ssh host", "Sup3rSecret"),
        (str(["mysql", "-u", "root", "-pS3cretPw1", "db"]), "S3cretPw1"),
        (str(["sshpass", "-p", "Sup3rSecret", "ssh", "host"]), "Sup3rSecret"),
    ],
)
def test_common_patterns(text: str, leak: str) -> None:
    out = redact_text(text)
    assert leak not in out
    assert MASK in out


@pytest.mark.parametrize(
    ("text", "leak", "kept"),
    [
        # A quoted value is masked to its closing quote, whatever it holds.
        (str({"password": "two words here"}), "words", "{'password': '"),
        (str({"password": "P,ssw0rd!"}), "ssw0rd", "'}"),
        (str({"db_password": "Tr0ub4dor&3"}), "&3", "'db_password'"),
        (str({"secret": "x;y;zzzz"}), "zzzz", "{'secret': '"),
        (str({"password": "it's-mine"}), "-mine", "{'password': \""),
        (json.dumps({"token": 'ab"cd"ef'}), "cd", '{"token": "'),
        ('password = "a b c d", user=bob', "b c d", "user=bob"),
        (str({"pwd": "abc"}), "abc", "'pwd'"),  # quoted: short values too
        # A bracketed value to its closing bracket, over lines as pprint writes it.
        (str({"auth": {"user": "bob", "key": "abcd"}}), "bob", "{'auth': {"),
        (
            pprint.pformat({"credentials": {"user": "bob", "key": "k" * 30, "n": list(range(20))}}),
            "bob",
            "'credentials'",
        ),
        # Bare after ":" (YAML, key: value lines): to the end of the line.
        ("db:\n  password: P,ssw0rd&1\n  port: 5432", "ssw0rd", "port: 5432"),
        (yaml.safe_dump({"db": {"password": "two words here", "port": 1}}), "words", "port: 1"),
        (yaml.safe_dump({"password": "it's:", "port": 1}), "s:", "port: 1"),  # 'it''s:'
        # Bare after "=": up to a space or one of ,;& (a query string, a k=v list).
        ("GET /x?token=abcdef&page=2", "abcdef", "&page=2"),
        ("user=bob, password=hunter22, host=db", "hunter22", ", host=db"),
        # A comma or semicolon ends it only where the next pair follows.
        ("login password=P,ssw0rd ok", "ssw0rd", " ok"),
        ("GET /x?user=bob&password=ab,cd;ef&page=2", "cd;ef", "&page=2"),
        ("user=bob,password=hunter2,host=db", "hunter2", ",host=db"),
        ("session_token=abcdef; Path=/", "abcdef", "; Path=/"),
        ("a=1;secret=ab;;cd;b=2", "cd", ";b=2"),
        ('{"api_key": 1,2345678, "user": "bob"}', "2345678", ', "user": "bob"}'),
        # So do a quote, a bracket and "&": inside a bare value they are part of it.
        ("login password=P'ssw0rd ok", "ssw0rd", " ok"),
        ("password=ab&cd]ef) x", "cd]ef", " x"),
        ('cmd "password=hunter22" next', "hunter22", '" next'),
        ("Config(password=xyz1, user=bob)", "xyz1", ", user=bob)"),
        # A YAML block scalar: its lines, indented past the key (quoted or not).
        ("secret_key: |\n  line one\n  line two\nnext: 1", "line two", "\nnext: 1"),
        ("db:\n  password: >-\n    folded\n\n    words\n  port: 5432", "words", "port: 5432"),
        (
            yaml.safe_dump({"db": {"password": "two\nlines", "port": 1}}, default_style="|"),
            "lines",
            '"port"',
        ),
        # A quoted YAML value goes on over the lines PyYAML wraps or breaks it into.
        (yaml.safe_dump({"password": "word " * 30, "port": 1}, width=20), "word w", "port: 1"),
        (yaml.safe_dump({"password": "1234567890 " * 9, "port": 1}, width=20), "1234", "port: 1"),
        (yaml.safe_dump({"password": "a\nb line\n", "x": 1}, default_style="'"), "b line", "'x'"),
        # A bare value after a quoted key ends at a comma, a bracket or the quote.
        ('{"api_key": 12345678, "user": "bob"}', "12345678", ', "user": "bob"}'),
        # A pair inside a quoted string ends at that string's quote.
        ('curl -H "Authorization: Basic dXNlcjpwYXNz" https://x/y', "dXNlcjpw", "https://x/y"),
        # A key=value word quoted whole (shlex, a list's repr, JSON): the rest of the word.
        (shlex.join(["tool", "password=two words9", "-v"]), "words9", "' -v"),
        (shlex.join(["tool", "password=it's s3cret", "-v"]), "s3cret", "' -v"),
        (shlex.join(["tool", "password=a' b c9", "-v"]), "b c9", "' -v"),
        (str(["run", "password=abc 123", "-v"]), "123", "'-v'"),
        (str(["run", 'password=it\'s "both" 9', "-v"]), "both", "'-v'"),
        ('{"cmd": "token=abc def123"}', "def123", '"}'),
        # The value after a secret-looking command-line option.
        ("running tool --password hunter22 --x 1", "hunter22", "--x 1"),
        (str(["tool", "--api-key", "abcd1234", "-v"]), "abcd1234", "'-v']"),
        ('tool --client-secret "two words" in.txt', "words", "in.txt"),
        # Unclosed: masked to the end of its line, the next line kept.
        ("password: 'unclosed value\nnext line", "unclosed", "next line"),
    ],
)
def test_secret_key_values_in_text_are_masked_whole(text: str, leak: str, kept: str) -> None:
    out = redact_text(text)
    assert leak not in out
    assert MASK in out
    assert kept in out


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("using password hunter22 for db", "using password {} for db"),
        ("the API key is ab12-cd34ef.", "the API key is {}."),
        ("login with passwd Tr0ub4dor&3 now", "login with passwd {} now"),
        ("set pwd 'Tr0ub4dor&3'", "set pwd '{}'"),
        ("passphrase CorrectHorse accepted", "passphrase {} accepted"),
        ("api_token abc12345 revoked", "api_token {} revoked"),
        ("the secret was xK9#qL2!", "the secret was {}"),
        ("my password is hunter22?", "my password is {}"),
        ("password 12345! for root", "password {} for root"),
        ("the API key is !ab12cd", "the API key is {}"),
        ("(password hunter22), then", "(password {}), then"),
        ("TOKEN 123456", "TOKEN {}"),
    ],
)
def test_a_secret_named_in_prose_is_masked(text: str, masked: str) -> None:
    assert redact_text(text) == masked.format(MASK)


@pytest.mark.parametrize(
    "text",
    [
        "password reset failed",
        "token expired",
        "the token has expired",
        "secret sauce v2",
        "password policy requires 12 chars",
        "the tokenizer gpt2-large loaded",
        "token https://auth.example.com/oauth/token",
        "passwords match",
        "api key rotation-scheduled",
    ],
)
def test_prose_about_secrets_is_kept(text: str) -> None:
    """Words after a secret's name (no digit, no sign, no inner capital), a URL,
    a plural or a longer word are not secrets."""
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "token=5 tests",
        "auth: ok",
        "at 12:30:45 token=",
        "tokens=12",
        "author: Ada Lovelace",
        # An exception's message is not a secret under its class name.
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials",
        "google.auth.exceptions.RefreshError: the token has expired",
        # Look-alikes of credential shapes.
        "python -u script.py:main",
        "mysql -u root -p db",  # -p alone: the client prompts for it
        "mysql -P3306 -h db --port=3306",
        "docker run -p8080:80 img",
        "disk-usage-report-for-node-0123456789-abcdefgh",
        "cluster sk-prod-cluster-name-0123456789-abcdef",
        "pipe=|abc",
    ],
)
def test_short_bare_values_and_ordinary_text_are_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password: hunter22\nnext: 1", "password: {}\nnext: 1"),
        ("password: hunter22\r\nnext: 1", "password: {}\r\nnext: 1"),
        ("  password: abcd\n    more words\n  port: 1", "  password: {}\n  port: 1"),
        ("secret_key: |\n  line one\n\n  line two\nnext: 1", "secret_key: |\n{}\nnext: 1"),
        ("password: (unclosed value\nnext line", "password: {}\nnext line"),
        ("password: 'unclosed value\nnext line", "password: '{}\nnext line"),
        ("password: (ab)cd more\nnext", "password: {}\nnext"),
    ],
)
def test_a_yaml_value_is_masked_and_the_lines_around_it_kept_exactly(
    text: str, masked: str
) -> None:
    assert redact_text(text) == masked.format(MASK)


def test_an_option_after_a_secret_looking_option_is_not_its_value() -> None:
    assert redact_text("tool --password -v x") == "tool --password -v x"


def test_a_bare_value_after_equals_ends_at_a_closing_bracket() -> None:
    assert redact_text("[session_token=123456] ok") == f"[session_token={MASK}] ok"


def test_cycles_depth_and_size_are_bounded() -> None:
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    assert redact(cyclic) == {"a": 1, "self": "<cycle>"}
    deep: Any = "leaf"
    for _ in range(50):
        deep = [deep]
    out = redact(deep)
    depth = 0
    while isinstance(out, list):
        out = out[0]
        depth += 1
    assert out == "<max depth reached>"
    assert depth < 20
    huge = list(range(10_000))
    out_list = redact(huge)
    assert len(out_list) == MAX_ITEMS + 1
    assert "more items" in out_list[-1]
    long = "x" * (MAX_STR_CHARS + 10)
    assert redact(long).endswith("[truncated 10 chars]")


def test_objects_whose_repr_raises() -> None:
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "unrepresentable" in redact(Bad())
    assert "unrepresentable" in str(redact({"v": Bad()})["v"])


def test_known_types_kept_or_rendered() -> None:
    class Colour(enum.Enum):
        RED = "red"

    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    uid = uuid.uuid4()
    assert redact(when) is when
    assert redact(uid) is uid
    assert redact(Colour.RED) == "red"
    assert redact(decimal.Decimal("1.5")) == "1.5"
    assert redact(Path("/a/b")) == "/a/b"
    assert redact(b"bytes") == "bytes"
    assert redact({3, 1, 2}) == [1, 2, 3]
    assert redact(float("nan")) == "nan"


def test_numpy_values() -> None:
    np = pytest.importorskip("numpy")
    assert redact(np.float32(1.5)) == 1.5
    assert redact(np.int64(7)) == 7
    assert redact(np.arange(3)) == [0, 1, 2]
    assert "shape=(1000,)" in redact(np.zeros(1000))


@pytest.mark.parametrize("key", ["\u017fecret", "api_\u212aey", "PASSWORD", "Api-Key"])
def test_keys_matched_case_insensitively_are_scanned(key: str) -> None:
    # The quick word test before the scan folds case as the key pattern does.
    assert redact_text(f"{key}: abcdef12") == f"{key}: {MASK}"


def test_a_secret_keyed_value_formatted_by_name_into_the_message_is_masked() -> None:
    import logging

    from aind_log_utils._render import Renderer

    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "db %(user)s:%(password)s at %(n)d", None, None
    )
    record.args = {"user": "bob", "password": "hunter22", "n": 3}
    event, line = Renderer().render(record)
    assert event["message"] == f"db bob:{MASK} at 3"
    assert b"hunter22" not in line
    assert record.args["password"] == "hunter22"  # the record itself is left as it was


def test_the_value_after_a_secret_option_in_a_command_list_is_masked() -> None:
    cmd = ["tool", "--api-key", "abcd1234", "--db-password=pw-123456", "-v", "--token", "-x"]
    assert redact({"args": cmd}) == {
        "args": ["tool", "--api-key", MASK, f"--db-password={MASK}", "-v", "--token", "-x"]
    }
