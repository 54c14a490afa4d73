from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """For evidence and for objects whose changes must go through services (so they reach
    the change log): shown in the admin, never added, edited or deleted there."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
