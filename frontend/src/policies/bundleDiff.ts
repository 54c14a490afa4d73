// What a release changes, file by file: two bundles' {path: sha256} maps.
export interface FileChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

const IGNORED = new Set(["/.manifest", ".manifest", "/.signatures.json", ".signatures.json"]);

export function bundleFileChanges(from: Record<string, string>, to: Record<string, string>): FileChanges {
  const changes: FileChanges = { added: [], removed: [], changed: [] };
  for (const [path, hash] of Object.entries(to)) {
    if (IGNORED.has(path)) continue;
    if (!(path in from)) changes.added.push(path);
    else if (from[path] !== hash) changes.changed.push(path);
  }
  for (const path of Object.keys(from)) if (!IGNORED.has(path) && !(path in to)) changes.removed.push(path);
  for (const list of Object.values(changes)) list.sort();
  return changes;
}

export function isEmpty(changes: FileChanges): boolean {
  return !changes.added.length && !changes.removed.length && !changes.changed.length;
}
