// Names for the generated schema types the pages use.
import type { Schemas } from "./client";

export type Agent = Schemas["Agent"];
export type DelegationRule = Schemas["DelegationRule"];
export type ApprovalRequest = Schemas["ApprovalRequest"];
export type DetectionAlert = Schemas["Alert"];
export type AlertInbox = Schemas["Inbox"];
export type IncidentDetail = Schemas["IncidentDetail"];
export type AgentKey = Schemas["AgentKey"];
export type AuditEvent = Schemas["AuditEvent"];
export type Activation = Schemas["Activation"];
export type Bundle = Schemas["Bundle"];
export type ObjectChange = Schemas["ObjectChange"];
export type DecisionLog = Schemas["DecisionLog"];
export type Environment = Schemas["Environment"];
export type EnvironmentToken = Schemas["EnvironmentToken"];
export type EnvironmentTokenCreated = Schemas["EnvironmentTokenCreated"];
export type GapReport = Schemas["GapReport"];
export type GapReportDetail = Schemas["GapReportDetail"];
export type ControlResult = Schemas["ControlResult"];
export type OPAInstance = Schemas["OPAInstance"];
export type PolicyModule = Schemas["PolicyModule"];
export type PolicyRevision = Schemas["PolicyRevision"];
export type PolicyTestReport = Schemas["PolicyTestReport"];
export type QuarantinedRecord = Schemas["QuarantinedRecord"];
export type SigningKey = Schemas["SigningKey"];
export type Tool = Schemas["Tool"];
export type User = Schemas["User"];
export type APIToken = Schemas["APIToken"];
export type APITokenCreated = Schemas["APITokenCreated"];
export type VerificationReport = Schemas["VerificationReport"];
export type Framework = Schemas["Framework"];
export type ComplianceScope = Schemas["ComplianceScope"];
export type AgentClassification = Schemas["AgentClassification"];
export type Attestation = Schemas["Attestation"];
export type SignOff = Schemas["SignOff"];
export type TimelineEntry = Schemas["TimelineEntry"];
export type Role = User["roles"][number];

export interface Session {
  authenticated: boolean;
  user: User | null;
  csrf_token: string;
  expires_in: number;
}

export interface PlaygroundResult {
  environment: string;
  revision: string;
  input: Record<string, unknown>;
  decision: Decision;
}

export interface DecisionReason {
  rule: string;
  message: string;
  controls?: string[];
}

export interface Decision {
  allow: boolean;
  effect: string;
  reasons: DecisionReason[];
  obligations?: Record<string, unknown>;
}
