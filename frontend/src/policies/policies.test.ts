import { describe, expect, it } from "vitest";
import { bundleFileChanges, isEmpty } from "./bundleDiff";
import { compileProblems, isSameModule, regoParser } from "./rego";
import { StringStream } from "@codemirror/language";

function tokens(line: string): [string, string | null][] {
  const state = regoParser.startState!(2);
  const stream = new StringStream(line, 2, 2);
  const out: [string, string | null][] = [];
  while (!stream.eol()) {
    const style = regoParser.token(stream, state);
    out.push([stream.current(), style]);
    stream.start = stream.pos;
  }
  return out.filter(([text]) => text.trim());
}

describe("Rego highlighting", () => {
  it("marks keywords, strings, numbers, operators and comments", () => {
    expect(tokens('deny contains msg if { input.x > 10 } # why')).toEqual([
      ["deny", "variableName"], ["contains", "keyword"], ["msg", "variableName"], ["if", "keyword"], ["{", null],
      ["input", "atom"], [".", null], ["x", "variableName"], [">", "operator"], ["10", "number"], ["}", null], ["# why", "comment"],
    ]);
    expect(tokens('x := "a \\" b"')).toEqual([["x", "variableName"], [":=", "operator"], ['"a \\" b"', "string"]]);
    expect(tokens("count(xs)")[0]).toEqual(["count", "function"]);
  });
  it("carries a raw string over lines", () => {
    const state = regoParser.startState!(2);
    const first = new StringStream("x := `multi", 2, 2);
    regoParser.token(first, state); // x
    while (!first.eol()) { first.start = first.pos; regoParser.token(first, state); }
    expect(state.inRawString).toBe(true);
    const second = new StringStream("line` y", 2, 2);
    expect(regoParser.token(second, state)).toBe("string");
    expect(state.inRawString).toBe(false);
  });
});

describe("compile problems", () => {
  it("keeps well-formed file:line:column entries only", () => {
    expect(compileProblems([{ file: "org/a.rego", line: 3, column: 5, message: "bad" }, { file: 1 }, null, "x", { file: "b", line: 2, message: "m" }])).toEqual([
      { file: "org/a.rego", line: 3, column: 5, message: "bad" },
      { file: "b", line: 2, column: 1, message: "m" },
    ]);
  });
  it("matches the bundle path of a module to its saved path", () => {
    expect(isSameModule("org/e2e/refunds.rego", "e2e/refunds.rego")).toBe(true);
    expect(isSameModule("e2e/refunds.rego", "e2e/refunds.rego")).toBe(true);
    expect(isSameModule("org/xe2e/refunds.rego", "e2e/refunds.rego")).toBe(false);
  });
});

describe("bundle file changes", () => {
  it("lists added, changed and removed files, ignoring the manifest and signatures", () => {
    const changes = bundleFileChanges({ "a.rego": "1", "b.rego": "2", "/.manifest": "m" }, { "a.rego": "1", "b.rego": "3", "c.rego": "4", "/.manifest": "n" });
    expect(changes).toEqual({ added: ["c.rego"], changed: ["b.rego"], removed: [] });
    expect(isEmpty(bundleFileChanges({ "a.rego": "1" }, { "a.rego": "1" }))).toBe(true);
    expect(bundleFileChanges({ "x.rego": "1" }, {}).removed).toEqual(["x.rego"]);
  });
});
