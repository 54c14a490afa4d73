"""Serving the console: index.html of the built app for every page path, JSON 404 for
unknown API paths. The app's assets are static files (WhiteNoise) under /static/console/."""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

INDEX = "console/index.html"

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Warden console not built</title>
</head><body><main><h1>The Warden console is not built</h1>
<p>Run <code>make run</code> (or <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>,
then <code>manage.py collectstatic</code>) and reload. The API is at <a href="/api/docs/">/api/docs/</a>.</p>
</main></body></html>"""


@never_cache
@ensure_csrf_cookie
def console_index(request, path: str = ""):
    """Every console route (/, /agents/x, ...) answers the same index.html; the app routes in the browser."""
    location = finders.find(INDEX)
    if location is None:
        candidate = settings.STATIC_ROOT / INDEX
        location = str(candidate) if candidate.exists() else None
    if location is None:
        return HttpResponse(NOT_BUILT, status=503)
    with open(location, "rb") as handle:
        return HttpResponse(handle.read(), content_type="text/html; charset=utf-8")


def api_not_found(request, path: str = ""):
    """Unknown /api/ paths: a JSON 404 an API client can read, not an HTML page.
    A known path without its trailing slash is redirected as Django's APPEND_SLASH would."""
    if settings.APPEND_SLASH and not request.path.endswith("/") and request.method in ("GET", "HEAD"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
    return JsonResponse({"detail": f"no API endpoint at {request.path}; see /api/docs/"}, status=404)
