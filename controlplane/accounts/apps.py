from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "controlplane.accounts"
    label = "accounts"
    verbose_name = "Users, roles and API tokens"

    def ready(self) -> None:
        from controlplane.accounts import schema  # noqa: F401  (registers the OpenAPI auth scheme)
