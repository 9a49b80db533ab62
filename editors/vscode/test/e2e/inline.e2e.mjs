// Browser half of .ci/vscode-e2e.sh: in code-server, open a Python file, type, wait for our
// ghost text, accept it with Tab, save, and check the file on disk; then check Escape,
// re-trigger and accept-word on our items, the status bar, live settings and the error for a
// missing interpreter. Prints "N passed, M failed"; exits non-zero on failure.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run .ci/vscode-e2e.sh)`);
  return value;
};
const url = env("SANTA_E2E_URL");
const workspace = env("SANTA_E2E_WORKSPACE"); // holds fib.py and add.py, written by the script
const screenshot = env("SANTA_E2E_SCREENSHOT");
const deadline = Date.now() + Number(process.env.SANTA_E2E_DEADLINE_MS ?? 240_000);
const remaining = (cap = Infinity) => Math.max(1_000, Math.min(cap, deadline - Date.now()));
const log = (message) => console.error(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
const started = Date.now();

// Monaco renders spaces in ghost text as no-break spaces.
const normalize = (text) => text.replace(/\u00a0/g, " ").replace(/\r/g, "");

async function waitFor(what, predicate, timeout) {
  const until = Date.now() + remaining(timeout);
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function serverReady(page) {
  const item = page.locator(".statusbar-item", { hasText: "Santa:" }).first();
  let last = "";
  await waitFor(
    "the Santa status bar item to say ready",
    async () => {
      const text = normalize((await item.innerText({ timeout: 1_000 }).catch(() => "")) ?? "").trim();
      if (text !== last) log(`status bar: ${JSON.stringify(text)}`);
      last = text;
      if (/Santa: (error|stopped)/.test(text)) {
        const detail = await item.getAttribute("aria-label").catch(() => "");
        throw new Error(`the server failed: ${text} ${detail ?? ""}`);
      }
      return /Santa: \S.* · /.test(text); // "Santa: <model> · <device>" = ready or busy
    },
    180_000,
  );
}

/** The ghost text now shown: the part on the cursor line, then any extra lines below it. */
async function ghostText(page, timeout) {
  const ghost = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text");
  try {
    await ghost.first().waitFor({ state: "visible", timeout: remaining(timeout) });
  } catch {
    return "";
  }
  await page.waitForTimeout(300); // let the rest of a multi-line suggestion render
  const text = await page.evaluate(() => {
    const inline = [...document.querySelectorAll(".monaco-editor .ghost-text-decoration")]
      .map((element) => element.textContent)
      .join("");
    // Extra lines live in a view zone, one .view-line each (empty ones have no ghost-text
    // token), below the cursor line.
    const token = [...document.querySelectorAll(".monaco-editor .ghost-text")].find(
      (element) => !element.classList.contains("ghost-text-decoration"),
    );
    const zone = token?.closest(".view-line")?.parentElement;
    const lines = zone ? [...zone.querySelectorAll(":scope > .view-line")].map((line) => line.textContent) : [];
    return [inline, ...lines].join("\n");
  });
  return normalize(text);
}

const browser = await chromium.launch({
  executablePath: env("SANTA_E2E_CHROMIUM"),
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
/** Text of `name` once `predicate` accepts it (saving is asynchronous). */
async function savedFile(name, what, predicate) {
  const path = join(workspace, name);
  try {
    return await waitFor(what, () => {
      const text = readFileSync(path, "utf8");
      return predicate(text) ? text : undefined;
    }, 15_000);
  } catch (error) {
    throw new Error(`${error.message}; ${name} is ${JSON.stringify(readFileSync(path, "utf8"))}`);
  }
}

/** Open a workspace file from the explorer and put the cursor at its end. */
async function openFile(page, name) {
  await page.locator(".explorer-folders-view .monaco-list-row", { hasText: name }).dblclick({ timeout: remaining(60_000) });
  await page.locator(".tab.active", { hasText: name }).waitFor({ timeout: remaining(30_000) });
  const editor = page.locator(".editor-group-container.active .monaco-editor .view-lines").first();
  await editor.waitFor({ timeout: remaining(30_000) });
  await editor.click();
  await page.keyboard.press("Control+End");
  log(`${name} open`);
}

/** Run a command by its title from the command palette; focus returns to the editor. */
async function runCommand(page, title) {
  await page.keyboard.press("Control+Shift+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: remaining(10_000) });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: remaining(10_000) });
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "hidden", timeout: remaining(10_000) });
}

/**
 * Type a function header and Enter, and return the ghost text that follows. A small
 * bundled model sometimes has nothing to say at a given spot, so go on typing a likely body,
 * one character (one request) at a time, until it does.
 */
async function typeUntilSuggestion(page, header, body) {
  await page.keyboard.type(header, { delay: 40 });
  await page.keyboard.press("Enter");
  let suggestion = await ghostText(page, 15_000);
  for (const char of body) {
    if (suggestion.trim()) break;
    await page.keyboard.type(char);
    suggestion = await ghostText(page, 3_000);
  }
  if (!suggestion.trim()) throw new Error(`no ghost text appeared while typing ${JSON.stringify(header + "\n" + body)}`);
  log(`ghost text: ${JSON.stringify(suggestion)}`);
  return suggestion;
}

async function tabAcceptsAndSaves(page) {
  await openFile(page, "fib.py");
  const header = "def fibonacci(n):";
  const suggestion = await typeUntilSuggestion(page, header, "return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)");
  await page.screenshot({ path: screenshot });
  log(`screenshot: ${screenshot}`);
  const before = readFileSync(join(workspace, "fib.py"), "utf8");
  // A suggestion that starts with indentation, typed at an indent, is VS Code's special case:
  // Tab indents first and the rest of the ghost text stays; the next Tab accepts it.
  for (let presses = 1; presses <= 3; presses += 1) {
    await page.keyboard.press("Tab");
    await page.waitForTimeout(300);
    const rest = await ghostText(page, 500);
    if (!rest.trim() || rest === suggestion || !suggestion.endsWith(rest)) break;
    log(`Tab ${presses} indented; ghost text left: ${JSON.stringify(rest)}`);
  }
  await page.keyboard.press("Control+s");
  const expected = suggestion.trimEnd();
  const saved = await savedFile("fib.py", "the saved file to contain the suggestion", (text) =>
    text.startsWith(before) && text.includes(header) && text.endsWith(expected),
  );
  log(`saved fib.py:\n${saved}`);
}

async function escapeRetriggerAcceptWord(page) {
  await openFile(page, "add.py");
  const header = "def add(a, b):";
  await typeUntilSuggestion(page, header, "return a + b if a is not None and b is not None else None");
  await page.keyboard.press("Escape");
  await page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text").first()
    .waitFor({ state: "hidden", timeout: remaining(5_000) })
    .catch(() => { throw new Error("Escape did not dismiss the ghost text"); });
  await runCommand(page, "Trigger Inline Suggestion"); // editor.action.inlineSuggest.trigger
  const again = await ghostText(page, 20_000);
  if (!again.trim()) throw new Error("Trigger Inline Suggestion did not bring the suggestion back");
  await page.keyboard.press("Control+s");
  const before = await savedFile("add.py", "add.py to be saved", (text) => text.includes(header));
  await page.keyboard.press("Control+ArrowRight"); // editor.action.inlineSuggest.acceptNextWord
  await page.waitForTimeout(300);
  await page.keyboard.press("Control+s");
  const afterWord = await savedFile("add.py", "the accepted word to be saved", (text) => text !== before);
  const word = afterWord.startsWith(before) ? afterWord.slice(before.length) : undefined;
  if (!word || !again.startsWith(word) || (word.trim() === again.trim() && /\s/.test(again.trim()))) {
    throw new Error(`Ctrl+Right inserted ${JSON.stringify(word ?? afterWord)}, not the first word of ${JSON.stringify(again)}`);
  }
  log(`accepted one word: ${JSON.stringify(word)}`);

  // The rest of the line, with the keybinding the script adds for acceptNextLine.
  const restOfLine = again.slice(word.length).split("\n")[0];
  if (restOfLine.trim()) {
    await page.keyboard.press("Control+Alt+l"); // editor.action.inlineSuggest.acceptNextLine
    await page.waitForTimeout(300);
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+s");
    const afterLine = await savedFile("add.py", "the accepted line to be saved", (text) => text !== afterWord);
    const line = afterLine.startsWith(afterWord) ? afterLine.slice(afterWord.length) : undefined;
    if (line === undefined || line.split("\n")[0].trimEnd() !== restOfLine.trimEnd()) {
      throw new Error(`accept line inserted ${JSON.stringify(line ?? afterLine)}, not ${JSON.stringify(restOfLine)}`);
    }
    log(`accepted the rest of the line: ${JSON.stringify(line)}`);
  }
  await page.keyboard.press("Escape");
}

/** Our log channel's file (code-server keeps --user-data-dir next to the workspace). */
function extensionLog() {
  const logs = join(dirname(workspace), "data", "logs");
  const files = readdirSync(logs, { recursive: true })
    .map(String)
    .filter((name) => name.endsWith("Santa LSP.log"));
  return files.map((name) => readFileSync(join(logs, name), "utf8")).join("\n");
}

/** Write the workspace's .vscode/settings.json, as a user editing it would. */
function writeWorkspaceSettings(settings) {
  mkdirSync(join(workspace, ".vscode"), { recursive: true });
  writeFileSync(join(workspace, ".vscode", "settings.json"), JSON.stringify(settings, null, 2));
}

async function statusBarText(page, what, pattern) {
  const item = page.locator(".statusbar-item", { hasText: "Santa:" }).first();
  return waitFor(what, async () => {
    const text = normalize((await item.innerText({ timeout: 1_000 }).catch(() => "")) ?? "").trim();
    return pattern.test(text) ? text : undefined;
  }, 30_000);
}

async function statusSettingsAndErrors(page) {
  await page.locator(".statusbar-item", { hasText: "Santa:" }).first().click();
  const toast = page.locator(".notification-toast", { hasText: "Model: bundled" }).first();
  await toast.waitFor({ timeout: remaining(15_000) }).catch(() => {
    throw new Error("clicking the status bar item showed no status with the model");
  });
  log(`status: ${normalize(await toast.innerText()).replace(/\s*\n\s*/g, " | ")}`);
  await page.mouse.move(700, 300); // away from the item, so its tooltip does not cover the toast
  await page.waitForTimeout(1_000); // let the toast finish sliding in and the tooltip fade
  const statusShot = join(dirname(screenshot), "vscode-status.png");
  await page.screenshot({ path: statusShot });
  log(`screenshot: ${statusShot}`);

  await runCommand(page, "Santa: Disable Inline Completions");
  log(`disabled: ${await statusBarText(page, "the status bar to say off", /Santa: off/)}`);
  await runCommand(page, "Santa: Enable Inline Completions");
  await statusBarText(page, "the status bar to say ready again", /Santa: \S.* · /);

  const starts = () => (extensionLog().match(/\] Starting /g) ?? []).length;
  const startsBefore = starts();
  await runCommand(page, "Santa: Restart Server");
  await waitFor("a new server process", () => starts() > startsBefore, 30_000);
  log(`restarted: ${await statusBarText(page, "the status bar to say ready after the restart", /Santa: \S.* · /)}`);

  // A new interpreter restarts the server; a missing one, or one without santa_lsp, must
  // say what to do.
  const broken = [["/nonexistent/bin/python3", /was not found/]];
  const bare = process.env.SANTA_E2E_BARE_PYTHON; // a venv without santa_lsp (or its dependencies)
  if (bare) broken.push([bare, /has no santa_lsp module|No module named/]);
  for (const [python, complaint] of broken) {
    writeWorkspaceSettings({ "santa.pythonPath": python, "santa.serverCommand": [] });
    await statusBarText(page, "the status bar to show the error", /Santa: error/);
    const error = page.locator(".notification-toast", { hasText: complaint }).first();
    await error.waitFor({ timeout: remaining(20_000) }).catch(() => {
      throw new Error(`no error message matching ${complaint} for santa.pythonPath ${python}`);
    });
    const message = normalize(await error.innerText());
    if (!/santa\.pythonPath/.test(message)) throw new Error(`the error does not say how to fix it: ${message}`);
    log(`error for ${python}: ${message.replace(/\s*\n\s*/g, " | ")}`);
    await error.locator(".codicon-notifications-clear").first().click().catch(() => undefined);
  }
  // One message per failure: the client library's generic pop-up is suppressed.
  const generic = await page.locator(".notification-toast", { hasText: "couldn't create connection" }).count();
  if (generic > 0) throw new Error("the generic 'couldn't create connection' pop-up was shown too");
}

const tests = [
  ["ghost text from santa-lsp is shown, Tab accepts it, Ctrl+S saves it", tabAcceptsAndSaves],
  ["Escape dismisses, Trigger Inline Suggestion brings it back, accept word and accept line work", escapeRetriggerAcceptWord],
  ["status bar click, enable/disable/restart commands, live settings, clear start-failure errors", statusSettingsAndErrors],
];

let passed = 0;
let failed = 0;
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(30_000);
  await page.goto(url, { timeout: remaining(60_000) });
  await page.locator(".monaco-workbench").waitFor({ timeout: remaining(90_000) });
  log("workbench loaded");
  await serverReady(page);
  log("server ready");
  for (const [name, run] of tests) {
    try {
      await run(page);
      passed += 1;
      console.log(`ok - ${name}`);
    } catch (error) {
      failed += 1;
      console.log(`not ok - ${name}: ${error instanceof Error ? error.message : String(error)}`);
      await failureScreenshot(page, name);
    }
  }
} catch (error) {
  failed += 1;
  console.log(`not ok - setup: ${error instanceof Error ? error.message : String(error)}`);
  if (page) await failureScreenshot(page, "setup");
} finally {
  await browser.close().catch(() => undefined);
}
failed = Math.max(failed, tests.length - passed); // a setup failure leaves tests unrun
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);

async function failureScreenshot(page, name) {
  const slug = name.split(" ")[0].replace(/[^a-z]/gi, "") || "test";
  const failurePath = join(process.env.SANTA_E2E_ARTIFACTS ?? workspace, `failure-${slug}.png`);
  await page.screenshot({ path: failurePath }).catch(() => undefined);
  console.error(`failure screenshot: ${failurePath}`);
}
