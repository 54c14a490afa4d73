from tests.sdk.conftest import admin, api_token, control_plane  # noqa: F401 - the live control plane fixtures
