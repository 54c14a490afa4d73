// A ready-to-paste OPA configuration (deploy/opa/config.yaml filled in) for one environment.
export interface OpaConfigInput {
  serviceUrl: string; // e.g. https://warden.example.com (the console's origin)
  environment: string;
  token: string;
  keyId: string;
  publicKeyPem: string;
}

export function opaConfig({ serviceUrl, environment, token, keyId, publicKeyPem }: OpaConfigInput): string {
  const pem = publicKeyPem.trim().split("\n").map((line) => `      ${line}`).join("\n");
  return `services:
  warden:
    url: ${serviceUrl.replace(/\/$/, "")}/opa
    credentials:
      bearer:
        token: "${token}"

labels:
  environment: ${environment}

keys:
  ${keyId}:
    algorithm: RS256
    key: |
${pem}

bundles:
  ${environment}:
    service: warden
    resource: bundles/${environment}
    persist: true
    polling:
      min_delay_seconds: 10
      max_delay_seconds: 20
      long_polling_timeout_seconds: 30
    signing:
      keyid: ${keyId}

decision_logs:
  service: warden
  reporting:
    min_delay_seconds: 5
    max_delay_seconds: 10

status:
  service: warden
`;
}
