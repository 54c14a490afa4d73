from rest_framework import serializers

from controlplane.accounts.api.serializers import UserSerializer


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class SessionSerializer(serializers.Serializer):
    authenticated = serializers.BooleanField()
    user = UserSerializer(allow_null=True)
    csrf_token = serializers.CharField(help_text="Send back as the X-CSRFToken header on every unsafe request.")
    expires_in = serializers.IntegerField(help_text="Seconds until the session expires without activity.")


class PlaygroundRequestSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=64)
    agent = serializers.CharField(max_length=64, help_text="The agent's name in the registry.")
    tool = serializers.CharField(max_length=200)
    args = serializers.JSONField(required=False, default=dict, help_text="The tool call's arguments (an object).")
    context = serializers.JSONField(
        required=False, default=dict,
        help_text="Extra input.context fields (approval_token, on_behalf_of, server, counters ...).",
    )

    def validate_args(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object of the tool's arguments, e.g. {\"path\": \"/tmp/x\"}")
        return value

    def validate_context(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object, e.g. {\"approval_token\": \"...\"}")
        return value


class PlaygroundResultSerializer(serializers.Serializer):
    environment = serializers.CharField()
    revision = serializers.CharField(help_text="The active bundle's revision that decided.")
    input = serializers.JSONField(help_text="The policy input that was evaluated.")
    decision = serializers.JSONField(help_text="data.warden.decision: allow, effect, reasons, obligations.")
