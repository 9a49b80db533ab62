import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  DEFAULT_OPTIONS,
  SettingsReader,
  needsRestart,
  readSettings,
  serverCommand,
  startFailureMessage,
} from "../../src/settings";

function reader(values: Record<string, unknown>): SettingsReader {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

test("no settings give the server's defaults and python3 -m santa_lsp", () => {
  const settings = readSettings(reader({}), "linux");
  assert.deepEqual(settings.options, DEFAULT_OPTIONS);
  assert.deepEqual(settings.server, { command: "python3", args: ["-m", "santa_lsp", "serve", "--stdio"] });
  assert.deepEqual(settings.documentSelector, ["*"]);
});

test("the default interpreter on Windows is python", () => {
  assert.equal(serverCommand(reader({}), "win32").command, "python");
});

test("settings map one-to-one to camelCase server options", () => {
  const values = {
    enable: false,
    model: "bundled",
    endpoint: "http://gpu-box:8000/v1",
    revision: "main",
    device: "cpu",
    dtype: "float32",
    maxNewTokens: 32,
    mode: "single-line",
    fimOrder: "psm",
    contextBudget: 512,
    suffixShare: 0.5,
    tokenHealing: false,
    prefetch: true,
    temperature: 0.2,
    topP: 0.9,
    debounceMs: 25,
    cacheSlots: 2,
    threads: 1,
    maxLatencyMs: 500,
  };
  assert.deepEqual(readSettings(reader(values)).options, values);
});

test("an empty revision is sent as null and strings are trimmed", () => {
  const options = readSettings(reader({ revision: "  ", model: " bundled " })).options;
  assert.equal(options.revision, null);
  assert.equal(options.model, "bundled");
});

test("an endpoint is trimmed; empty means in-process", () => {
  assert.equal(readSettings(reader({ endpoint: " http://gpu-box:8000/v1 " })).options.endpoint, "http://gpu-box:8000/v1");
  assert.equal(readSettings(reader({ endpoint: "   " })).options.endpoint, "");
  assert.equal(readSettings(reader({ endpoint: 8000 })).options.endpoint, "");
});

test("values of the wrong type fall back to the default", () => {
  const options = readSettings(reader({ maxNewTokens: "many", enable: "yes", topP: Number.NaN, model: "" })).options;
  assert.equal(options.maxNewTokens, DEFAULT_OPTIONS.maxNewTokens);
  assert.equal(options.enable, true);
  assert.equal(options.topP, DEFAULT_OPTIONS.topP);
  assert.equal(options.model, DEFAULT_OPTIONS.model);
});

test("pythonPath and serverCommand choose the command, serverCommand first", () => {
  assert.deepEqual(serverCommand(reader({ pythonPath: "/venv/bin/python" })), {
    command: "/venv/bin/python",
    args: ["-m", "santa_lsp", "serve", "--stdio"],
  });
  assert.deepEqual(
    serverCommand(reader({ pythonPath: "/venv/bin/python", serverCommand: ["/opt/santa-lsp", "serve", "--stdio"] })),
    { command: "/opt/santa-lsp", args: ["serve", "--stdio"] },
  );
  assert.equal(serverCommand(reader({ serverCommand: [] }), "linux").command, "python3");
});

test("only a new command or document selector needs a restart", () => {
  const before = readSettings(reader({}));
  assert.equal(needsRestart(before, readSettings(reader({ model: "bundled", enable: false }))), false);
  assert.equal(needsRestart(before, readSettings(reader({ pythonPath: "/venv/bin/python" }))), true);
  assert.equal(needsRestart(before, readSettings(reader({ serverCommand: ["santa-lsp", "serve", "--stdio"] }))), true);
  assert.equal(needsRestart(before, readSettings(reader({ documentSelector: ["python"] }))), true);
});

test("start failures tell the user what to do", () => {
  const server = { command: "python3", args: ["-m", "santa_lsp", "serve", "--stdio"] };
  const missing = startFailureMessage(server, Object.assign(new Error("spawn python3 ENOENT"), { code: "ENOENT" }));
  assert.match(missing, /'python3' was not found/);
  assert.match(missing, /santa\.pythonPath/);
  assert.match(missing, /pip install santa-lsp/);
  const noModule = startFailureMessage(server, new Error("closed"), "/usr/bin/python3: No module named santa_lsp");
  assert.match(noModule, /has no santa_lsp module/);
  const noDependency = startFailureMessage(server, new Error("closed"), "ModuleNotFoundError: No module named 'lsprotocol'");
  assert.match(noDependency, /No module named 'lsprotocol'.*pip install santa-lsp/);
  assert.match(startFailureMessage(server, new Error("boom")), /boom.*Show Logs/);
});

test("package.json contributes a setting for every server option, with the same default", () => {
  const manifest = JSON.parse(readFileSync("package.json", "utf8"));
  const properties = manifest.contributes.configuration.properties as Record<string, { default: unknown }>;
  for (const [key, value] of Object.entries(DEFAULT_OPTIONS)) {
    const setting = properties[`santa.${key}`];
    assert.ok(setting, `santa.${key} is contributed`);
    assert.deepEqual(setting.default, value === null ? "" : value, `default of santa.${key}`);
  }
  for (const key of ["serverCommand", "pythonPath", "documentSelector"]) {
    assert.ok(properties[`santa.${key}`], `santa.${key} is contributed`);
  }
  const commands = (manifest.contributes.commands as { command: string }[]).map((c) => c.command).sort();
  assert.deepEqual(commands, [
    "santa.disable",
    "santa.enable",
    "santa.restartServer",
    "santa.showLogs",
    "santa.showStatus",
    "santa.toggle",
  ]);
});

test("every option we send exists in santa_lsp/config.py with the same default", (t) => {
  // config.py needs only the standard library; skip where no Python can import it.
  // `python -m santa_lsp.config --json`: every option by its wire key, as config.py declares it.
  const python = spawnSync(process.env.PYTHON ?? "python3", ["-m", "santa_lsp.config", "--json"], {
    encoding: "utf8",
    cwd: "../..",
  });
  if (python.status !== 0) {
    t.skip(`cannot import santa_lsp.config: ${python.error?.message ?? python.stderr.trim().split("\n").pop()}`);
    return;
  }
  const declared = JSON.parse(python.stdout) as Record<string, { default: unknown }>;
  const camel = Object.fromEntries(Object.entries(declared).map(([key, option]) => [key, option.default]));
  // What we send must exist on the server with the same default; an option the server added
  // since is only reported, since the server's default applies until a setting is added here.
  const ours = DEFAULT_OPTIONS as unknown as Record<string, unknown>;
  for (const key of Object.keys(ours)) {
    assert.ok(key in camel, `the server has no option '${key}'`);
    assert.deepEqual(ours[key], camel[key], `default of ${key}`);
  }
  const missing = Object.keys(camel).filter((key) => !(key in ours));
  if (missing.length > 0) t.diagnostic(`server options without a santa.* setting yet: ${missing.join(", ")}`);
});
