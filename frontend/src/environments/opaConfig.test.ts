import { describe, expect, it } from "vitest";
import { opaConfig } from "./opaConfig";

describe("OPA configuration", () => {
  it("names the service URL, token, key id, public key and the environment's bundle", () => {
    const config = opaConfig({
      serviceUrl: "https://warden.example.com/",
      environment: "prod",
      token: "wdn_secret",
      keyId: "warden-abc",
      publicKeyPem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    });
    expect(config).toContain("url: https://warden.example.com/opa\n");
    expect(config).toContain('token: "wdn_secret"');
    expect(config).toContain("  warden-abc:\n    algorithm: RS256\n    key: |\n      -----BEGIN PUBLIC KEY-----\n      AAAA\n      -----END PUBLIC KEY-----\n");
    expect(config).toContain("resource: bundles/prod");
    expect(config).toContain("keyid: warden-abc");
  });
});
