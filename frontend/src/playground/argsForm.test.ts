import { describe, expect, it } from "vitest";
import type { Tool } from "../api/types";
import { argsFromFields, argumentFields, parseArgsJson } from "./argsForm";

describe("playground arguments", () => {
  it("offers the usual fields of a tool's category", () => {
    expect(argumentFields({ category: "file" } as Tool)).toEqual(["path"]);
    expect(argumentFields({ category: "other" } as Tool)).toEqual([]);
    expect(argumentFields(undefined)).toEqual([]);
  });
  it("keeps numbers as numbers and leaves out empty fields", () => {
    expect(argsFromFields({ amount: "1200", currency: "EUR", recipient: "" })).toEqual({ amount: 1200, currency: "EUR" });
  });
  it("accepts only a JSON object", () => {
    expect(parseArgsJson('{"path": "/x"}')).toEqual({ ok: true, value: { path: "/x" } });
    expect(parseArgsJson("")).toEqual({ ok: true, value: {} });
    expect(parseArgsJson("[1]")).toMatchObject({ ok: false, error: expect.stringContaining("JSON object") });
    expect(parseArgsJson("null")).toMatchObject({ ok: false });
    expect(parseArgsJson("{bad")).toMatchObject({ ok: false, error: expect.stringContaining("Not valid JSON") });
  });
});
