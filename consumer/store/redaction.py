"""A store URL as messages, logs and ``repr`` may show it: every password in it masked.

A libpq URI carries a password in two places: the user-info
(``postgresql://user:secret@host/db``) and the query string (``?password=secret``,
``?sslpassword=`` for an encrypted client key). Parameter names are percent-decoded, as
libpq does. ``passfile`` names a file, not a secret, and is shown.
"""

from __future__ import annotations

from urllib.parse import unquote

MASK = "***"
SECRET_PARAMS = frozenset({"password", "sslpassword"})  # libpq parameters holding a secret


def _split(url: str) -> tuple[str, str, str, str]:
    """``url`` as (``scheme://``, user-info and hosts, path, ``?query#fragment``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url, ""
    # the user-info ends at the last "@" before the query, even when a raw "/" in the
    # password (which libpq refuses) would end the authority sooner: over-mask, never leak
    at = rest.partition("?")[0].rfind("@")
    ends = [index for index in (rest.find(mark, at + 1) for mark in "/?#") if index >= 0]
    end = min(ends, default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    path, mark, query = tail.partition("?")
    return scheme + sep, netloc, path, mark + query


def _pieces(query: str) -> list[tuple[str, str, str]]:
    """The (name, ``=``, value) of each parameter of ``?query#fragment``, as written."""
    body = query.removeprefix("?").partition("#")[0]
    return [piece.partition("=") for piece in body.split("&")]


def _is_secret(name: str) -> bool:
    return unquote(name).strip().lower() in SECRET_PARAMS


def display_url(url: str) -> str:
    """Return ``url`` with every password replaced by ``***``, for messages and logs.

    Args:
        url: a store URL (a libpq URI, or ``sqlite:///…``).

    Returns:
        The URL, its user-info password and password query parameters masked.
    """
    scheme, netloc, path, query = _split(url)
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    if query:
        pieces = [
            f"{name}={MASK}" if eq and _is_secret(name) else f"{name}{eq}{value}"
            for name, eq, value in _pieces(query)
        ]
        hash_mark, fragment = query.partition("#")[1:]
        query = "?" + "&".join(pieces) + hash_mark + fragment
    return scheme + netloc + path + query


def url_secrets(url: str) -> set[str]:
    """The passwords in ``url``, as written and percent-decoded.

    Args:
        url: a store URL.

    Returns:
        Each non-empty password, in both spellings.
    """
    _, netloc, _, query = _split(url)
    userinfo, at, _ = netloc.rpartition("@")
    found = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
    found += [value for name, eq, value in _pieces(query) if eq and _is_secret(name)]
    return {spelling for value in found for spelling in (value, unquote(value)) if spelling}


def mask_url_secrets(text: str, url: str) -> str:
    """Return ``text`` with every password of ``url`` replaced by ``***``.

    For messages that quote what the driver said about the URL (libpq may echo a value).

    Args:
        text: a message.
        url: the store URL it may quote.

    Returns:
        The message, masked.
    """
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
