"""Who may look and who may act: the token login, the host's hook, CSRF and read-only mode.

* **Token.** When the dashboard has a token, every page and action needs it: as an
  ``Authorization: Bearer <token>`` header, or once per browser through the login form, which
  sets an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token (never the
  token itself).
* **Host hook.** ``authorize(request)`` (sync or async) lets an application that mounts the
  dashboard use its own authentication; a request it refuses gets 403.
* **CSRF.** Every POST carries the per-browser CSRF value (a random cookie, sent back in the
  form field ``csrf`` or the ``X-CSRF-Token`` header); a POST without it, or with another
  value, is refused with 403 before anything is read or written (double-submit cookie).
* **Read-only.** No action form is rendered and every POST but the login is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable

import attrs
from starlette.requests import Request

__all__ = ["Authorize"]

#: The host application's check, called with each request; True lets it through.
Authorize = Callable[[Request], bool | Awaitable[bool]]

CSRF_COOKIE = "actorq_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "actorq_session"


@attrs.frozen(kw_only=True)
class Guard:
    """The dashboard's access rules, built once by ``create_dashboard``."""

    read_only: bool  # True: nothing can be changed through this dashboard
    token: str | None  # the secret every request needs; None: no token login
    authorize: Authorize | None  # the host's check; None: none

    @property
    def needs_login(self) -> bool:
        """True when a browser must log in with the token first."""
        return self.token is not None

    def session_value(self) -> str:
        """What the session cookie holds after a good login: an HMAC of the token."""
        assert self.token is not None
        return hmac.new(
            self.token.encode(), b"actorq-dashboard-session", hashlib.sha256
        ).hexdigest()

    def token_matches(self, given: str) -> bool:
        """True when ``given`` is the token (compared in constant time)."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def has_token(self, request: Request) -> bool:
        """True when the request carries the token (header) or a good session cookie."""
        if self.token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session_value().encode())

    async def host_allows(self, request: Request) -> bool:
        """The host hook's answer (True without a hook)."""
        if self.authorize is None:
            return True
        answer = self.authorize(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)


def csrf_value(request: Request) -> tuple[str, bool]:
    """This browser's CSRF value, and whether it is new (then the response sets the cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """True when the POST sent back the CSRF cookie's value, in its form or its header."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = submitted or request.headers.get(CSRF_HEADER, "")
    if len(cookie) < 32 or not given:
        return False
    return hmac.compare_digest(cookie.encode(), given.encode())
