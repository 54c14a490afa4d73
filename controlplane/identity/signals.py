"""Sent after commit whenever registry facts that policies read have changed.

Bundle building listens to this to produce a new bundle for the agent's
environments (a suspended agent must be denied at the next bundle activation).
"""

from django.dispatch import Signal

# Sent with agent=<Agent>, reason=<str>.
agent_registry_changed = Signal()
