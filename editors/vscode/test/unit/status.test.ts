import assert from "node:assert/strict";
import { test } from "node:test";
import { describeStatus, formatStatusReport, parseStatus, shortModelName, statusSummary } from "../../src/status";

test("ready shows the model and the device", () => {
  const view = describeStatus({ state: "ready", model: "bigcode/santacoder", device: "cuda", dtype: "float16" });
  assert.equal(view.text, "$(sparkle) Santa: santacoder · cuda");
  assert.match(view.tooltip, /Model: bigcode\/santacoder/);
  assert.match(view.tooltip, /Device: cuda, float16/);
  assert.equal(view.severity, "normal");
});

test("loading shows the progress percentage", () => {
  const view = describeStatus({ state: "loading", model: "bundled" }, { percentage: 41.6, message: "weights" });
  assert.equal(view.text, "$(loading~spin) Santa: loading bundled 42%");
  assert.match(view.tooltip, /weights/);
  assert.equal(describeStatus({ state: "loading" }).text, "$(loading~spin) Santa: loading");
});

test("busy spins, errors are red, disabled and stopped say so", () => {
  assert.match(describeStatus({ state: "busy", model: "bundled", device: "cpu" }).text, /^\$\(sync~spin\) Santa: bundled · cpu$/);
  const error = describeStatus({ state: "error", message: "no such model" });
  assert.equal(error.severity, "error");
  assert.match(error.tooltip, /no such model/);
  assert.match(describeStatus({ state: "disabled" }).text, /off/);
  assert.equal(describeStatus({ state: "stopped" }).severity, "warning");
});

test("parseStatus keeps known fields and flags unknown states", () => {
  assert.deepEqual(parseStatus({ state: "ready", model: "bundled", device: "cpu", dtype: "float32", stats: {} }), {
    state: "ready",
    model: "bundled",
    device: "cpu",
    dtype: "float32",
    message: undefined,
  });
  const odd = parseStatus({ state: "dreaming" });
  assert.equal(odd.state, "error");
  assert.match(odd.message ?? "", /dreaming/);
  assert.equal(parseStatus(null).state, "error");
});

test("shortModelName takes the last path part", () => {
  assert.equal(shortModelName("bigcode/santacoder"), "santacoder");
  assert.equal(shortModelName("/models/my-model/"), "my-model");
  assert.equal(shortModelName("C:\\models\\tiny"), "tiny");
  assert.equal(shortModelName("bundled"), "bundled");
});

test("formatStatusReport flattens nested stats", () => {
  const report = formatStatusReport({ state: "ready", stats: { requests: 3, latencyMs: { p50: 12 } } });
  assert.equal(report, "state: ready\nstats:\n  requests: 3\n  latencyMs:\n    p50: 12");
});

test("statusSummary is the tooltip on one line", () => {
  assert.equal(
    statusSummary({ state: "ready", model: "bundled", device: "cpu", dtype: "float32" }),
    "Santa LSP: ready · Model: bundled · Device: cpu, float32",
  );
  assert.equal(statusSummary({ state: "error", message: "no such model" }), "Santa LSP: error · no such model");
});
