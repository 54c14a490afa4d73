import { describe, expect, it } from "vitest";
import { formFromProfile, formProblems, pathProblem, profileFromForm } from "./sandboxProfile";

describe("profile ⇄ form", () => {
  it("round-trips a profile and keeps only the limits it sets", () => {
    const profile = { file_read: ["/srv/data"], file_write: ["/srv/out"], limits: { wall_seconds: 5, memory_mb: 256 } };
    const form = formFromProfile(profile);
    expect(form).toEqual({ enabled: true, file_read: ["/srv/data"], file_write: ["/srv/out"], limits: { wall_seconds: 5, memory_mb: 256 } });
    expect(profileFromForm(form)).toEqual(profile);
  });
  it("an empty profile is a disabled sandbox, and a disabled form saves {}", () => {
    expect(formFromProfile({}).enabled).toBe(false);
    expect(formFromProfile(null).enabled).toBe(false);
    expect(profileFromForm({ enabled: false, file_read: ["/x"], file_write: [], limits: {} })).toEqual({});
  });
  it("an enabled sandbox with nothing listed is still a non-empty profile", () => {
    expect(profileFromForm({ enabled: true, file_read: [], file_write: [], limits: { cpu_seconds: Number.NaN } })).toEqual({
      file_read: [], file_write: [], limits: {},
    });
  });
  it("ignores what is not a path list or a numeric limit", () => {
    expect(formFromProfile({ file_read: ["/a", 3], limits: { wall_seconds: "10", bogus: 1 } })).toEqual({
      enabled: true, file_read: ["/a"], file_write: [], limits: {},
    });
  });
});

describe("hints", () => {
  it("says what the SDK refuses about a path", () => {
    expect(pathProblem("/srv/data")).toBeNull();
    expect(pathProblem("srv")).toBe("'srv' must be absolute (start with '/')");
    expect(pathProblem("/")).toMatch(/whole host/);
    expect(pathProblem("/srv/../etc")).toMatch(/'\.\.'/);
    expect(pathProblem("/proc/self")).toMatch(/kernel interface/);
    expect(pathProblem("/devices")).toBeNull();
  });
  it("names the field like the API does", () => {
    const form = { enabled: true, file_read: ["/a", "/a"], file_write: ["rel"], limits: { memory_mb: 8 } };
    expect(formProblems(form)).toEqual([
      "file_read: paths must not repeat",
      "file_write[0]: 'rel' must be absolute (start with '/')",
      "limits.memory_mb: 8 is outside 16..65536",
    ]);
    expect(formProblems({ ...form, enabled: false })).toEqual([]);
  });
});
