"""ASGI entry point: Warden is served by uvicorn so long-polling views can be async."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

application = get_asgi_application()
