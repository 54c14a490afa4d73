from rest_framework import serializers

from controlplane.opa.models import DecisionLog, OPAInstance


class OPAInstanceSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    environment_revision = serializers.CharField(
        read_only=True, allow_null=True, help_text="The revision the environment serves now."
    )
    is_current = serializers.BooleanField(
        read_only=True, allow_null=True,
        help_text="Whether the instance runs the environment's active revision (null: nothing is active).",
    )
    is_stale = serializers.BooleanField(read_only=True, help_text="No status report for 5 minutes.")

    class Meta:
        model = OPAInstance
        fields = [
            "id",
            "environment",
            "instance_id",
            "version",
            "labels",
            "bundle_name",
            "active_revision",
            "environment_revision",
            "is_current",
            "is_stale",
            "bundles",
            "discovery",
            "decision_logs",
            "plugins",
            "first_seen",
            "last_seen",
        ]
        read_only_fields = fields


class DecisionLogSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)

    class Meta:
        model = DecisionLog
        fields = [
            "decision_id",
            "environment",
            "instance_id",
            "path",
            "input",
            "result",
            "bundles",
            "labels",
            "erased",
            "masked",
            "timestamp",
            "received_at",
            "event",
        ]
        read_only_fields = fields
