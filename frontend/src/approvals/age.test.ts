import { describe, expect, it } from "vitest";
import { age } from "./age";

describe("age", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  it("says seconds, minutes and hours", () => {
    expect(age("2026-01-01T11:59:18Z", now)).toBe("42 s");
    expect(age("2026-01-01T11:53:00Z", now)).toBe("7 min");
    expect(age("2026-01-01T09:55:00Z", now)).toBe("2 h 5 min");
  });
  it("never shows a negative age for a clock ahead of ours", () => {
    expect(age("2026-01-01T12:00:05Z", now)).toBe("0 s");
  });
});
