"""Signals shared across domains."""

from django.dispatch import Signal

# Sent after commit whenever facts that travel in bundle data changed (an agent
# suspended, a key rotated, a tool added). Bundle building listens and publishes a
# new bundle for every environment, so engines see the change at their next
# activation. Sent with reason=<str> and, when one agent changed, agent=<Agent>; with
# environment=<name> when only that environment's data changed (an approval grant).
registry_changed = Signal()

# Sent after an audit batch's verified records are committed, with batch_id=<int>. Approvals
# listen: a signed `consumed` record takes its grant out of the next bundle.
audit_batch_stored = Signal()
