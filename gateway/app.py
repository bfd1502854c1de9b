"""make_app(ctx): THE url table. Reading it tells every endpoint and its handler."""

from __future__ import annotations

from pathlib import Path

from tornado.web import Application

from .context import Context
from .handlers.admin import AdminSite, LoginHandler, LogoutHandler, ReloadHandler
from .handlers.base import NotFoundHandler
from .handlers.chat import ChatHandler
from .handlers.dashboard import (DashboardDataHandler, InteractionHandler, InteractionsHandler, KeysHandler,
                                 OverviewHandler, RootHandler)
from .handlers.health import HealthHandler, MetricsHandler
from .handlers.messages import CountTokensHandler, MessagesHandler
from .handlers.models import ModelsHandler

ROOT = Path(__file__).resolve().parent.parent


def make_app(ctx: Context) -> Application:
    """The Tornado application for one Context."""
    args = {"ctx": ctx}
    # The dashboard's Jinja environment and admin credentials, built once.
    site = {"ctx": ctx, "site": AdminSite.build(ctx.admin_key, ROOT / "templates")}
    routes = [
        # OpenAI-compatible API (the OpenAI SDK's base_url may end in /v1 or not).
        (r"/v1/chat/completions", ChatHandler, args),
        (r"/chat/completions", ChatHandler, args),
        (r"/v1/models", ModelsHandler, args),
        (r"/models", ModelsHandler, args),
        # Anthropic's native API, passed through (the Anthropic SDK's base_url has no /v1).
        (r"/v1/messages", MessagesHandler, args),
        (r"/v1/messages/count_tokens", CountTokensHandler, args),
        # Operators: load balancers, Prometheus.
        (r"/health", HealthHandler, args),
        (r"/metrics", MetricsHandler, args),
        # The operator dashboard (admin key only).
        (r"/", RootHandler, site),
        (r"/dashboard/", RootHandler, site),
        (r"/dashboard", OverviewHandler, site),
        (r"/dashboard/keys", KeysHandler, site),
        (r"/dashboard/interactions", InteractionsHandler, site),
        (r"/dashboard/interactions/([0-9A-Za-z_-]{1,64})", InteractionHandler, site),
        (r"/dashboard/data\.json", DashboardDataHandler, site),
        (r"/dashboard/login", LoginHandler, site),
        (r"/dashboard/logout", LogoutHandler, site),
        (r"/admin/reload", ReloadHandler, site),
    ]
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        compress_response=False,
        # Every request is already recorded as one interaction; Tornado's access log would write it twice.
        log_function=_no_access_log,
    )


def _no_access_log(handler: object) -> None:
    return None
