"""Tells drf-spectacular that agents file approval requests as they upload audit batches."""

from controlplane.audit.schema import AgentSignatureScheme


class ApprovalAgentSignatureScheme(AgentSignatureScheme):
    target_class = "controlplane.approvals.api.views.SingleUseAgentSignature"
    name = "agentSignatureSingleUse"
