"""Tells drf-spectacular how agents authenticate their uploads (docs/audit.md)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.audit.authentication.AgentSignatureAuthentication"
    name = "agentSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Warden-Signature",
            "description": (
                "Ed25519 signature by the agent's registered key over `<X-Warden-Timestamp>\\n<sha256 hex of body>`, "
                "with X-Warden-Agent, X-Warden-Key-Id and X-Warden-Timestamp headers."
            ),
        }
