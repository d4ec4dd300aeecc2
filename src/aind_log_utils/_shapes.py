"""Credentials recognisable by their shape alone, masked wherever they stand in text.

URL userinfo (``scheme://user:pass@``), ``Bearer``/``Basic``/``Token`` credentials,
curl's ``-u user:pass``, MySQL's ``-p<password>`` and sshpass's ``-p <password>``,
AWS access key ids, JSON web tokens, PEM private key blocks, and the tokens whose
prefix says what they are: GitHub's, GitLab's (``glpat-``) and Slack's, Hugging
Face's (``hf_``), OpenAI's and Anthropic's (``sk-``, mixed case and digits),
Stripe's (``sk_live_``...) and Google's API keys (``AIza``). Each pattern runs only
when a cheap substring test says it could match, so ordinary text costs a handful
of ``in`` tests, not a regex scan.

Secrets under a key (``password=...``) are :mod:`._scrub`'s.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "scrub_shapes"]

#: What replaces a secret.
MASK = "**********"

_USERINFO_RE = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s/@]+(?=@)")
_AUTH_RE = re.compile(r"(?P<pre>\b(?:[Bb]earer|[Bb]asic|[Tt]oken)\s+)[A-Za-z0-9\-._~+/]{8,}=*")
# No leading \b: a literal first character lets the regex engine skip ahead fast.
_AWS_KEY_RE = re.compile(r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[A-Z0-9]{16}(?![A-Z0-9])")
#: A JSON web token: base64url header and payload (each JSON, so "eyJ"), signature.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: Tokens named by their prefix: GitHub's (ghp_, gho_, ghu_, ghs_, ghr_,
#: github_pat_), GitLab's personal access tokens (glpat-), Slack's (xox?-), Hugging
#: Face's (hf_), Stripe's (sk_live_, rk_test_) and Google's API keys (AIza).
_VENDOR_TOKEN_RE = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abprs]-[\w-]{10,}"
    r"|hf_[A-Za-z0-9]{30,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|AIza[\w-]{35})"
)
#: OpenAI's and Anthropic's keys (sk-..., sk-proj-..., sk-ant-...): 32 or more
#: characters holding a digit, a capital and a small letter, so ``disk-usage`` or a
#: host name ``sk-prod-cluster`` is not one.
_SK_KEY_RE = re.compile(r"(?<![\w-])sk-(?=[\w-]*\d)(?=[\w-]*[A-Z])(?=[\w-]*[a-z])[\w-]{32,}")
#: curl's basic auth: ``curl ... -u user:pass`` / ``--user user:pass`` (the password
#: masked; ``python -u x.py:main`` is not one).
_CURL_USER_RE = re.compile(
    r"""(?P<pre>\bcurl\b[^\n]*?(?<!\S)(?:-u|--user)(?:\s+|=)['"]?[^\s:'"]+:)[^\s'"]+"""
)
#: A password on a command line where the tool takes it glued or after ``-p``: MySQL's
#: and MariaDB's clients (``mysql -u root -pS3cret``; ``-p`` alone prompts, ``-P``
#: is the port) and sshpass (``sshpass -p 'S3cret' ssh host``), on a shell line or
#: in a command's list repr (``['mysql', '-pS3cret']``, ``['sshpass', '-p', 'S3cret']``).
_CLI_PASSWORD_RE = re.compile(
    r"""(?P<pre>\b(?:mysql\w*|mariadb\w*)\b[^\n]*?(?<![^\s'"])-p)(?:'[^'\n]*'|"[^"\n]*"|[^\s'"]+)"""
    r"""|(?P<pre2>\bsshpass\b[^\n]*?(?<![^\s'"])-p(?:[ \t]+|['"],[ \t]*)?)"""
    r"""(?:'[^'\n]*'|"[^"\n]*"|[^\s'"]+)"""
)
#: A PEM private key, its whole block (an unfinished one to the end of the text).
_PEM_KEY_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)


def scrub_shapes(text: str) -> str:
    """Mask every credential ``text`` holds in a recognisable shape.

    Args:
        text: any string.

    Returns:
        The string with each such credential replaced by :data:`MASK`.
    """
    if "@" in text and "://" in text:
        text = _USERINFO_RE.sub(r"\g<pre>" + MASK, text)
    if "earer" in text or "asic " in text or "oken " in text:
        text = _AUTH_RE.sub(r"\g<pre>" + MASK, text)
    if "A" in text:
        text = _AWS_KEY_RE.sub(MASK, text)
    if "eyJ" in text:
        text = _JWT_RE.sub(MASK, text)
    if (
        "_" in text
        and (
            ("gh" in text and _has_github_prefix(text))
            or "hf_" in text or "k_live_" in text or "k_test_" in text
        )
    ) or "xox" in text or "AIza" in text or "glpat-" in text:  # fmt: skip
        text = _VENDOR_TOKEN_RE.sub(MASK, text)
    if "sk-" in text:
        text = _SK_KEY_RE.sub(MASK, text)
    if "curl" in text and "-u" in text:
        text = _CURL_USER_RE.sub(r"\g<pre>" + MASK, text)
    if "-p" in text and ("mysql" in text or "mariadb" in text or "sshpass" in text):
        text = _CLI_PASSWORD_RE.sub(_keep_prefix, text)
    if "PRIVATE KEY-----" in text:
        text = _PEM_KEY_RE.sub(MASK, text)
    return text


def _keep_prefix(match: re.Match[str]) -> str:
    """The match with what follows its ``pre`` (or ``pre2``) group masked (inside its quotes)."""
    pre = match["pre"] or match["pre2"]
    quote = match[0][len(pre) : len(pre) + 1]
    return f"{pre}{quote}{MASK}{quote}" if quote in ("'", '"') else pre + MASK


def _has_github_prefix(text: str) -> bool:
    # The regex costs ~0.9 us on any text with a "gh" (thought, high): test first.
    return (
        "ghp_" in text or "gho_" in text or "ghu_" in text or "ghs_" in text
        or "ghr_" in text or "github_pat_" in text
    )  # fmt: skip
