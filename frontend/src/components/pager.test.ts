import { describe, expect, it } from "vitest";
import { pageCount, pagerText } from "./pager";

describe("list page footer", () => {
  it("shows an exact count as it is", () => {
    expect(pagerText(240, 50, 50)).toBe("51–100 of 240");
    expect(pagerText(0, 50, 0)).toBe("0 of 0");
    expect(pageCount(240, 50)).toBe(5);
  });
  it("shows a capped count as 10,000+ and offers the page after it", () => {
    expect(pagerText(10_000, 50, 0, true)).toBe("1–50 of 10,000+");
    expect(pagerText(10_000, 50, 9_950, true)).toBe("9951–10000 of 10,000+");
    expect(pageCount(10_000, 50, true)).toBe(201);
    expect(pageCount(10_000, 50, false)).toBe(200);
  });
});
