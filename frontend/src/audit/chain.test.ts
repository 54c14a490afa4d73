import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../api/types";
import { chainLinks } from "./chain";

const event = (id: number, seq: number, prev: string, hash: string) => ({ id, seq, prev_hash: prev, record_hash: hash }) as AuditEvent;

describe("session chain links", () => {
  it("links each record to the previous record's hash, whatever the input order", () => {
    const links = chainLinks([event(3, 2, "h1", "h2"), event(1, 0, "genesis", "h0"), event(2, 1, "h0", "h1")]);
    expect([...links.entries()].sort()).toEqual([[1, "start"], [2, "linked"], [3, "linked"]]);
  });
  it("shows a broken link and a gap in the sequence", () => {
    const links = chainLinks([event(1, 0, "g", "h0"), event(2, 1, "tampered", "h1"), event(3, 3, "h2", "h3")]);
    expect(links.get(2)).toBe("broken");
    expect(links.get(3)).toBe("gap");
  });
});
