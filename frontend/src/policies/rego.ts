// Rego highlighting for CodeMirror 6: a small stream tokenizer (keywords, strings, raw
// strings, numbers, comments, operators) — enough to read policies comfortably.
import { StreamLanguage, type StreamParser } from "@codemirror/language";

export const REGO_KEYWORDS = new Set([
  "package", "import", "default", "else", "if", "contains", "some", "every", "in", "not", "with", "as",
]);
const ATOMS = new Set(["true", "false", "null", "input", "data"]);

interface State {
  inRawString: boolean;
}

export const regoParser: StreamParser<State> = {
  name: "rego",
  startState: () => ({ inRawString: false }),
  token(stream, state) {
    if (state.inRawString) {
      if (stream.skipTo("`")) {
        stream.next();
        state.inRawString = false;
      } else stream.skipToEnd();
      return "string";
    }
    if (stream.eatSpace()) return null;
    if (stream.match("#")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match("`")) {
      state.inRawString = true;
      return "string";
    }
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/)) return "string";
    if (stream.match(/^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/)) return "number";
    if (stream.match(/^(?::=|==|!=|<=|>=|[=<>+\-*/%|&])/)) return "operator";
    const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/) as RegExpMatchArray | null;
    if (word) {
      const text = word[0];
      if (REGO_KEYWORDS.has(text)) return "keyword";
      if (ATOMS.has(text)) return "atom";
      if (stream.peek() === "(") return "function";
      return "variableName";
    }
    stream.next();
    return null;
  },
  languageData: { commentTokens: { line: "#" } },
};

export const rego = StreamLanguage.define(regoParser);

export interface CompileProblem {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** The compile problems of a 400 from saving a module (details of the "source" error). */
export function compileProblems(details: unknown[]): CompileProblem[] {
  return details.flatMap((item) => {
    if (typeof item !== "object" || item === null) return [];
    const { file, line, column, message } = item as Record<string, unknown>;
    if (typeof file !== "string" || typeof line !== "number" || typeof message !== "string") return [];
    return [{ file, line, column: typeof column === "number" ? column : 1, message }];
  });
}

/** Does the engine's file name refer to the module saved at `path`? (bundle paths add a prefix) */
export function isSameModule(file: string, path: string): boolean {
  return file === path || file.endsWith(`/${path}`);
}
