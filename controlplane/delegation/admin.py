from django.contrib import admin

from controlplane.delegation.models import DelegationRule, PersonGrant, Revocation

admin.site.register(DelegationRule)
admin.site.register(PersonGrant)
admin.site.register(Revocation)
