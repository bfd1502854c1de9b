"""The dashboard's shared machinery: admin authentication, the login page, and the Jinja environment.

The admin key opens the dashboard three ways: `Authorization: Bearer <admin key>`,
`?token=<admin key>` (which sets the session cookie and redirects without the token),
or the login form. The cookie holds an HMAC of the admin key, never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2

from ..context import Context
from ..errors import AuthenticationFailed, GatewayError, InvalidRequest
from ..keys import KeysFileError
from .base import BaseHandler

log = logging.getLogger(__name__)

SESSION_COOKIE = "gateway_admin"
SESSION_DAYS = 7
# Pages load only our own script and stylesheet; the JSON data block is not executed.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class AdminSite:
    """What every dashboard handler shares: the templates and the admin credentials. Built once in make_app."""

    templates: jinja2.Environment
    admin_key: bytes = field(repr=False)
    session: bytes = field(repr=False)  # the cookie value

    @classmethod
    def build(cls, admin_key: str, template_path: Path) -> "AdminSite":
        """Compile-once templates and the session token derived from `admin_key`."""
        key = admin_key.encode("utf-8")
        session = hmac.new(key, b"llm-gateway dashboard session v1", hashlib.sha256).hexdigest().encode()
        return cls(templates=template_environment(template_path), admin_key=key, session=session)

    def is_admin_key(self, presented: str) -> bool:
        """Whether `presented` is the admin key (constant-time)."""
        return bool(self.admin_key) and hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self.admin_key)

    def is_session(self, cookie: str) -> bool:
        """Whether a cookie value is this admin key's session token (constant-time)."""
        return hmac.compare_digest(cookie.encode("utf-8", "surrogatepass"), self.session)


class DashboardHandler(BaseHandler):
    """Base of every dashboard page: admin-only, HTML errors, and never recorded as an API interaction."""

    endpoint = "dashboard"
    recorded = False  # BaseHandler.on_finish hands only recorded requests to the sinks
    public = False  # pages anyone may open (login, the / redirect)
    json_api = False  # answer a missing key with a 401 JSON error instead of the login page

    def initialize(self, ctx: Context, site: AdminSite) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.site = site

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        # A ?token= URL must not leak through the Referer header.
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", _CSP)

    def prepare(self) -> None:
        if self.public:
            return
        token = self.get_query_argument("token", None)
        if token is not None:
            if self.site.is_admin_key(token):
                self.start_session()
                self.redirect(self.uri_without_token())
                return
            self.refuse("That is not the admin key.")
            return
        if not self.is_admin():
            self.refuse("That is not the admin key." if self.request.headers.get("Authorization") else None)

    def is_admin(self) -> bool:
        """Whether the request carries the admin key (header) or its session cookie."""
        for value in self.request.headers.get_list("Authorization"):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and self.site.is_admin_key(token.strip()):
                return True
        cookie = self.get_cookie(SESSION_COOKIE)
        return cookie is not None and self.site.is_session(cookie)

    def start_session(self) -> None:
        """Set the session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
        self.set_cookie(SESSION_COOKIE, self.site.session.decode(), path="/dashboard", expires_days=SESSION_DAYS,
                        httponly=True, samesite="Strict", secure=self.request.protocol == "https")

    def uri_without_token(self) -> str:
        """This request's path and query, minus `token`."""
        query = [(k, v) for k, v in parse_qsl(self.request.query, keep_blank_values=True) if k != "token"]
        return self.request.path + ("?" + urlencode(query) if query else "")

    def refuse(self, error: str | None) -> None:
        """The login page (401) for a page, a 401 JSON error for the data endpoint; never the data."""
        if self.json_api:
            raise AuthenticationFailed("The dashboard needs the admin key: 'Authorization: Bearer <admin key>'.")
        self.set_status(401)
        self.render_page("login.html", error=error, next=self.uri_without_token())

    def render_page(self, name: str, **values: Any) -> None:
        """Render a template and finish the response."""
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.render_fragment(name, **values))

    def render_fragment(self, name: str, **values: Any) -> str:
        """A template rendered to a string (a whole page or a partial)."""
        template = self.site.templates.get_template(name)
        return template.render(static_url=self.static_url, path=self.request.path, **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self.json_api:
            super().write_error(status_code, **kwargs)
            return
        error = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        if isinstance(error, GatewayError):
            status, message = error.status, error.message
        else:
            status, message = status_code, self._reason
        self.set_status(status)
        self.render_page("error.html", status=status, message=message)


class LoginHandler(DashboardHandler):
    """GET: the login form. POST: check the key, set the session cookie, go back where the user was."""

    public = True

    def get(self) -> None:
        if self.is_admin():
            self.redirect("/dashboard")
            return
        self.render_page("login.html", error=None, next=_safe_next(self.get_query_argument("next", "")))

    def post(self) -> None:
        target = _safe_next(self.get_body_argument("next", ""))
        if not self.site.is_admin_key(self.get_body_argument("key", "").strip()):
            self.set_status(401)
            self.render_page("login.html", error="That is not the admin key.", next=target)
            return
        self.start_session()
        self.redirect(target, status=303)


class LogoutHandler(DashboardHandler):
    """POST: forget the session cookie."""

    public = True

    def post(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/dashboard")
        self.redirect("/dashboard/login", status=303)


def _safe_next(target: str) -> str:
    """Only a dashboard path on this site: never an open redirect."""
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


# --- the Jinja environment ----------------------------------------------------------------

def template_environment(path: Path) -> jinja2.Environment:
    """One environment for every page: autoescaped, compiled once, with the dashboard's number filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path)),
        autoescape=True,
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=format_number, ms=format_ms, usd=format_usd, pct=format_pct, when=format_when,
                       duration=format_duration, plural=format_plural)
    return env


_DASH = "—"


def format_number(value: float | int | None) -> str:
    """12345 -> '12,345'; None -> '—'."""
    if value is None:
        return _DASH
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def format_plural(count: int, noun: str) -> str:
    """'1 error', '2 errors', '1,200 requests'."""
    return f"{format_number(count)} {noun}{'' if count == 1 else 's'}"


def format_ms(value: float | None) -> str:
    """Milliseconds for people: '0.42 ms', '812 ms', '1.24 s'."""
    if value is None:
        return _DASH
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def format_usd(value: float | None) -> str:
    """Dollars with enough places to see a fraction of a cent."""
    if value is None:
        return _DASH
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"


def format_pct(value: float | None) -> str:
    """A ratio as a percentage: 0.125 -> '12.5%'."""
    if value is None:
        return _DASH
    return f"{value * 100:.1f}%".replace(".0%", "%")


def format_when(iso: str | None) -> str:
    """An ISO UTC timestamp as 'YYYY-MM-DD HH:MM:SS' (the column says UTC)."""
    if not iso:
        return _DASH
    return iso[:19].replace("T", " ")


def format_duration(seconds: float | None) -> str:
    """A span of time: '45 s', '12 min', '3 h', '2 d'."""
    if seconds is None:
        return _DASH
    if seconds < 60:
        return f"{math.floor(seconds)} s"
    if seconds < 3600:
        return f"{math.floor(seconds / 60)} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} d".replace(".0 d", " d")


class ReloadHandler(DashboardHandler):
    """POST /admin/reload (admin key by header): reread keys.json, as SIGHUP does."""

    endpoint = "admin"
    json_api = True

    def post(self) -> None:
        try:
            count = self.ctx.reload_keys()
        except KeysFileError as exc:
            log.error("keys not reloaded, the old keys keep serving: %s", exc)
            raise InvalidRequest(f"Keys not reloaded; the old keys keep serving. {exc}") from None
        log.info("keys reloaded by the admin endpoint: %d virtual keys", count)
        self.finish({"reloaded": True, "virtual_keys": count})
