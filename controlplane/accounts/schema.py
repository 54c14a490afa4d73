"""Tells drf-spectacular how API tokens are sent, so /api/docs/ can authorize with one."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APITokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.accounts.authentication.APITokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token wdn_…` — create one with POST /api/v1/tokens/ or `manage.py seed_demo`.",
        }
