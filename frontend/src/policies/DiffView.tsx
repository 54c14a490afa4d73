import { diffLines } from "diff";

/** Line diff of two revisions: removed lines red, added green. */
export function DiffView({ before, after }: { before: string; after: string }) {
  const parts = diffLines(before, after);
  return (
    <pre data-testid="diff-view" style={{ fontSize: 12, overflowX: "auto", border: "1px solid #dee2e6", padding: 8, margin: 0 }}>
      {parts.flatMap((part, index) =>
        part.value.replace(/\n$/, "").split("\n").map((line, lineIndex) => {
          const sign = part.added ? "+" : part.removed ? "-" : " ";
          const background = part.added ? "#d3f9d8" : part.removed ? "#ffe3e3" : "transparent";
          return (
            <div key={`${index}-${lineIndex}`} style={{ background }}>
              <span aria-label={part.added ? "added" : part.removed ? "removed" : undefined}>{sign}</span> {line}
            </div>
          );
        }),
      )}
    </pre>
  );
}
