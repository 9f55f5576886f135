"""Who may use the console, and which requests may change anything.

- Bound to loopback without ``$DBOS_CONSOLE_TOKEN``, it trusts its callers, but
  only by a loopback ``Host`` header (a page of another site that rebinds its
  DNS name to 127.0.0.1 is refused).
- With a token (required on any other address: the console refuses to start
  without one), every page and API call needs ``Authorization: Bearer <token>``
  or the session cookie the login form sets; only the login form and its
  style sheet answer without.
- A POST authenticated by the cookie (or by nothing, on loopback) must carry the
  page's CSRF token in ``X-CSRF-Token`` — a header no cross-site form can set
  and no cross-site script may send without a CORS preflight, which is never
  granted — and an ``Origin``, if sent, of this console. A bearer token is never
  sent by a browser on its own, so bearer POSTs need neither.

Cookie and CSRF values are HMACs of the token (or of a per-process secret
without one): nothing to store, and changing the token ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from typing import Awaitable, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dbos._api.admin import is_loopback

TOKEN_ENV = "DBOS_CONSOLE_TOKEN"
COOKIE = "dbos_console_session"
CSRF_HEADER = "x-csrf-token"
_PUBLIC = ("/login", "/static/console.css")
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


class ConsoleTokenRequired(Exception):
    """Bound to a non-loopback address without ``$DBOS_CONSOLE_TOKEN``."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to serve the console on {host}: any address other than loopback requires a token "
            f"(set {TOKEN_ENV})"
        )


class Guard:
    def __init__(self, host: str, token: Optional[str]) -> None:
        if not token and not is_loopback(host):
            raise ConsoleTokenRequired(host)
        self.token = token or None
        secret = (token or secrets.token_hex(32)).encode()
        self._session = hmac.new(secret, b"dbos-console-session", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(secret, b"dbos-console-csrf", hashlib.sha256).hexdigest()

    # -- checks -----------------------------------------------------------------
    def _bearer(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        return self.token is not None and scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode())

    def _cookie(self, request: Request) -> bool:
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self._session.encode())

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not a browser, or a same-origin GET
            return True
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc == host

    def refusal(self, request: Request) -> Optional[Response]:
        """None if ``request`` may go on; else the answer that refuses it."""
        path = request.url.path
        if self.token is None:
            hostname = urlsplit("//" + request.headers.get("host", "")).hostname or ""
            if not is_loopback(hostname):
                return _refuse(request, 403, "this console answers only to a loopback Host (set a token to serve "
                                              "it under another name)")
            bearer = False
        else:
            bearer = self._bearer(request)
            if not bearer and not self._cookie(request) and path not in _PUBLIC:
                return _refuse(request, 401, "authentication required: send Authorization: Bearer <token> "
                                             "or log in at /login")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not bearer and path != "/login":
            if not self._same_origin(request):
                return _refuse(request, 403, "cross-site request refused (Origin is not this console)")
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
                return _refuse(request, 403, f"missing or wrong CSRF token (send the page's token in {CSRF_HEADER})")
        return None

    # -- login ------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return _login_page(None, 200 if self.token is not None else 404)
        if self.token is None:
            return JSONResponse({"error": "no token is set: nothing to log in to"}, 404)
        if not self._same_origin(request):
            return _refuse(request, 403, "cross-site request refused (Origin is not this console)")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _login_page("wrong token", 401)
        response = RedirectResponse("/fleet", 303)
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response


def with_security_headers(response: Response) -> Response:
    for k, v in _SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    return response


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")


def _refuse(request: Request, code: int, message: str) -> Response:
    if _wants_json(request) or code != 401:
        return JSONResponse({"error": message}, code)
    return _login_page(None, 401)


def _login_page(error: Optional[str], code: int) -> Response:
    note = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dbos console: log in</title>'
        '<link rel="stylesheet" href="/static/console.css"></head><body class="login"><main>'
        "<h1>dbos console</h1><p>This console needs its token (DBOS_CONSOLE_TOKEN).</p>" + note +
        '<form method="post" action="/login"><label>Token <input type="password" name="token" '
        'autocomplete="current-password" autofocus></label> <button type="submit">Log in</button></form>'
        "</main></body></html>"
    )
    return HTMLResponse(body, code)
