"""Reading transport URLs: libpq options for the PostgreSQL driver, and hiding passwords.

A PostgreSQL URL is a libpq connection URL. The options asyncpg reads itself (``sslmode``,
``sslrootcert``, ``target_session_attrs``, ...) stay in the DSN it is given; the few it does not
read are translated (``connect_timeout`` becomes its connect timeout, ``application_name`` and
``options=-c name=value`` become server settings); libpq options it cannot honour and unknown
ones are refused with :class:`~transports.UnsupportedURL`, one line naming the option. A
password never appears in an error message: every URL shown goes through :func:`redact_url`.
"""

from __future__ import annotations

import math
import re
import shlex
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import attrs

from ._errors import UnsupportedURL

__all__ = ["redact_url"]

# Read by asyncpg from the URL itself (asyncpg/connect_utils.py).
_DRIVER_OPTIONS = frozenset(
    {
        "dbname",
        "database",
        "gsslib",
        "host",
        "krbsrvname",
        "passfile",
        "password",
        "port",
        "service",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
        "user",
    }
)
# Translated here into asyncpg's arguments.
_TRANSLATED_OPTIONS = frozenset(
    {"application_name", "connect_timeout", "fallback_application_name", "options"}
)
# libpq options the driver has no way to honour: refused rather than silently ignored.
_UNSUPPORTED_OPTIONS = frozenset(
    {
        "channel_binding",
        "client_encoding",
        "gssencmode",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "load_balance_hosts",
        "replication",
        "require_auth",
        "requirepeer",
        "sslcompression",
        "sslcrldir",
        "sslsni",
        "tcp_user_timeout",
    }
)
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` option) shown as ``***``.

    Use it wherever a transport URL is printed or logged. Never raises.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hosts = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(key in ("password", "sslpassword") for key, _ in pairs):
                query = urlencode(
                    [
                        (key, "***" if key in ("password", "sslpassword") else value)
                        for key, value in pairs
                    ],
                    safe="*",
                    quote_via=quote,
                )
        if netloc == parts.netloc and query == parts.query:
            return url
        if "://" not in url:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        # Spelled out: urlunsplit drops an empty host's "//" (sqlite:///x.db -> sqlite:/x.db).
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        return (
            shown
            + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else "")
        )
    except Exception:
        # A URL too broken to parse is not shown at all: it may hold a password anywhere.
        return "<unparsable URL>"


@attrs.frozen(kw_only=True)
class PostgresConnectArgs:
    """What asyncpg is given for one PostgreSQL URL."""

    dsn: str  # the URL with only the options asyncpg reads itself
    timeout: float | None  # connect_timeout, in seconds; None: asyncpg's default
    server_settings: dict[str, str]  # from application_name and options=-c name=value


def postgres_connect_args(url: str) -> PostgresConnectArgs:
    """Split a libpq URL (without actorq's own options) into asyncpg's arguments.

    Raises:
        UnsupportedURL: an unknown option, a libpq option the driver cannot honour, or a bad
            value (a port outside 1-65535, a timeout that is not a number, an unknown
            ``sslmode``, an ``options`` value other than ``-c name=value`` settings).
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsupportedURL(f"malformed PostgreSQL URL {shown}: {exc}") from None
    _check_hosts(parts.netloc, shown)
    kept: list[tuple[str, str]] = []
    timeout: float | None = None
    settings: dict[str, str] = {}
    fallback_name: str | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _DRIVER_OPTIONS:
            if key == "port":
                for port in value.split(","):
                    _check_port(port, shown)
            if key == "sslmode" and value not in _SSLMODES:
                raise UnsupportedURL(
                    f"sslmode={value!r} in {shown}: use one of {', '.join(sorted(_SSLMODES))}"
                )
            kept.append((key, value))
        elif key == "connect_timeout":
            timeout = _timeout(value, shown)
        elif key == "application_name":
            settings["application_name"] = value
        elif key == "fallback_application_name":
            fallback_name = value
        elif key == "options":
            settings.update(_options(value, shown))
        elif key in _UNSUPPORTED_OPTIONS:
            raise UnsupportedURL(
                f"option {key!r} in {shown} is not supported by the PostgreSQL driver (asyncpg)"
            )
        else:
            known = sorted(_DRIVER_OPTIONS | _TRANSLATED_OPTIONS)
            raise UnsupportedURL(
                f"unknown option {key!r} in {shown}; PostgreSQL URLs take pool_size, schema "
                f"and the libpq options {', '.join(known)}"
            )
    if fallback_name is not None:
        settings.setdefault("application_name", fallback_name)
    query = urlencode(kept, quote_via=quote)
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return PostgresConnectArgs(dsn=dsn, timeout=timeout, server_settings=settings)


def _check_hosts(netloc: str, shown: str) -> None:
    hosts = netloc.rsplit("@", 1)[-1]
    for host in hosts.split(","):
        port = ""
        if host.startswith("["):
            end = host.find("]")
            if end < 0:
                raise UnsupportedURL(f"unclosed [ in the host of {shown}")
            rest = host[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise UnsupportedURL(f"unexpected {rest!r} after the host in {shown}")
                port = rest[1:]
        elif ":" in host:
            port = host.rsplit(":", 1)[1]
        if port:
            _check_port(port, shown)


def _check_port(port: str, shown: str) -> None:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UnsupportedURL(f"port {port!r} in {shown} is not a number from 1 to 65535")


def _timeout(value: str, shown: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        raise UnsupportedURL(
            f"connect_timeout={value!r} in {shown} is not a number of seconds"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UnsupportedURL(f"connect_timeout={value!r} in {shown} must be >= 0 seconds")
    # libpq reads 0 as "wait forever".
    return None if seconds == 0 else seconds


def _options(value: str, shown: str) -> dict[str, str]:
    """libpq's ``options``: ``-c name=value`` (or ``--name=value``) settings, space separated."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise UnsupportedURL(f"options={value!r} in {shown}: {exc}") from None
    settings: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting = words[index + 1]
            index += 2
        elif (word.startswith("-c") and len(word) > 2) or word.startswith("--"):
            setting = word[2:]
            index += 1
        else:
            raise UnsupportedURL(
                f"options={value!r} in {shown}: only -c name=value settings are understood"
            )
        name, equals, setting_value = setting.partition("=")
        name = name.replace("-", "_")
        if not equals or _SETTING.fullmatch(name) is None:
            raise UnsupportedURL(f"options={value!r} in {shown}: {setting!r} is not name=value")
        settings[name] = setting_value
    return settings
