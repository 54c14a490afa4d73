"""Human approval for held tool calls: requests, waiting, signed single-use grants.

    approvals = ApprovalClient(identity, "https://warden.example.com", spool_dir="var/approvals")
    guard = Guard(identity, backend, signer=signer, approvals=approvals,
                  on_approval="wait", approval_timeout=600)

See docs/approvals.md.
"""

from agents_sdk.approvals.client import ApprovalClient, ApprovalTicket, ApprovalUnreachable
from agents_sdk.approvals.flow import GRANT_REJECTED, consume_presented_grant, obtain_approval
from agents_sdk.approvals.grants import GrantLedger, args_sha256, binding_failures, read_grant

__all__ = [
    "GRANT_REJECTED",
    "ApprovalClient",
    "ApprovalTicket",
    "ApprovalUnreachable",
    "GrantLedger",
    "args_sha256",
    "binding_failures",
    "consume_presented_grant",
    "obtain_approval",
    "read_grant",
]
