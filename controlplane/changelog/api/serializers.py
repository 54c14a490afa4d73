from rest_framework import serializers

from controlplane.changelog.models import ObjectChange


class ObjectChangeSerializer(serializers.ModelSerializer):
    object_type = serializers.SerializerMethodField()
    user = serializers.CharField(source="user_name", read_only=True)

    class Meta:
        model = ObjectChange
        fields = [
            "id",
            "time",
            "user",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "message",
            "prechange_data",
            "postchange_data",
        ]
        read_only_fields = fields

    def get_object_type(self, obj: ObjectChange) -> str:
        return f"{obj.object_type.app_label}.{obj.object_type.model}"
