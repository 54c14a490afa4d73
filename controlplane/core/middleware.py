"""Refuse, before any view runs, query parameters and paths that no database can store.

Every list filter ends in SQL; one shared check here replaces a fix per filter (promote's
`to`, the report and timeline filters, token names...). A 400 names the parameter.
"""

from __future__ import annotations

from urllib.parse import unquote

from django.http import JsonResponse

from controlplane.core.storable import text_problem


class StorableInputMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if problem := self.problem(request):
            field, message = problem
            return JsonResponse({field: [message]}, status=400)
        return self.get_response(request)

    @staticmethod
    def problem(request) -> tuple[str, str] | None:
        if "\x00" in request.path or "%00" in request.META.get("PATH_INFO", ""):
            return "path", "must not contain the NUL character (U+0000); remove it"
        query = request.META.get("QUERY_STRING", "")
        if not query:
            return None
        for name, values in request.GET.lists():
            if problem := text_problem(name):
                return "query", f"a parameter name {problem}"
            for value in values:
                if problem := text_problem(value):
                    return name, problem
        # Django decodes invalid UTF-8 in the query to U+FFFD, so surrogates cannot occur;
        # the raw string is checked for an encoded NUL the decoded form could hide.
        if "\x00" in unquote(query):
            return "query", "must not contain the NUL character (U+0000); remove it"
        return None
