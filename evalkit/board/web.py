"""What every board page and form shares: rendering in the viewer's language with the CSRF cookie set,
the CSRF and same-origin check of a post, and the role check."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

from evalkit.board import auth, i18n
from evalkit.report.render import render

CSRF_COOKIE = "evalkit_csrf"


def page(request: Request, template: str, title_args: dict | None = None, **context) -> HTMLResponse:
    """A board page in the viewer's language (``?lang=`` sets it, a cookie keeps it), with the CSRF cookie."""
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    asked = request.query_params.get("lang")
    language = i18n.pick_language(asked, request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
    t = i18n.translator(language)
    context["page_title"] = t(context["page_title"], **(title_args or {}))
    context.setdefault("store", request.app.state.store)
    html = render(template, root=request.scope.get("root_path", ""), csrf=token, t=t,
                  html_lang=language, languages=i18n.LANGUAGES, **context)
    response = HTMLResponse(html)
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
    if asked in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, asked, samesite="lax", max_age=365 * 86400)
    return response


def check_csrf(request: Request, token: str) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    origin = request.headers.get("origin")
    if not cookie or not hmac.compare_digest(cookie, token):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and submit the form again")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPException(403, f"cross-site request from {origin} refused")


def require(request: Request, role: str) -> None:
    if not auth.allows(request.state.role, role):
        raise HTTPException(403, f"{request.state.user} is a {request.state.role}; this needs the {role} role (or higher)")
