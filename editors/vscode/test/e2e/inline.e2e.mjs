// Browser half of .ci/vscode-e2e.sh: in code-server, open a Python file, type, wait for our
// ghost text, accept it with Tab, save, and check the file on disk. Exits non-zero on failure.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run .ci/vscode-e2e.sh)`);
  return value;
};
const url = env("SANTA_E2E_URL");
const file = env("SANTA_E2E_FILE");
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
    // Extra lines live in a view zone: one element per line, its token spans classed ghost-text.
    const rows = new Set(
      [...document.querySelectorAll(".monaco-editor .ghost-text")]
        .filter((element) => !element.classList.contains("ghost-text-decoration"))
        .map((element) => element.parentElement),
    );
    const lines = [...rows].map((row) => row.textContent);
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
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(30_000);
  await page.goto(url, { timeout: remaining(60_000) });
  await page.locator(".monaco-workbench").waitFor({ timeout: remaining(90_000) });
  log("workbench loaded");

  await page.locator(".explorer-folders-view .monaco-list-row", { hasText: "fib.py" }).dblclick({ timeout: remaining(60_000) });
  const editor = page.locator(".monaco-editor .view-lines").first();
  await editor.waitFor({ timeout: remaining(30_000) });
  log("fib.py open");

  await serverReady(page);
  log("server ready");

  await editor.click();
  const typed = "def fibonacci(n):";
  await page.keyboard.type(typed, { delay: 40 });
  await page.keyboard.press("Enter");
  let suggestion = await ghostText(page, 45_000);
  if (!suggestion.trim()) {
    // The small bundled model may have nothing to say at a bare indent; give it a start.
    log("no ghost text yet; typing more");
    await page.keyboard.type("if n", { delay: 40 });
    suggestion = await ghostText(page, 45_000);
  }
  if (!suggestion.trim()) throw new Error("no ghost text appeared");
  log(`ghost text: ${JSON.stringify(suggestion)}`);
  await page.screenshot({ path: screenshot });
  log(`screenshot: ${screenshot}`);

  await page.keyboard.press("Tab");
  await page.waitForTimeout(300);
  await page.keyboard.press("Control+s");
  const expected = suggestion.trimEnd();
  const saved = await waitFor(
    "the saved file to contain the suggestion",
    () => {
      const text = readFileSync(file, "utf8");
      return text.startsWith(typed) && text.includes(expected) ? text : undefined;
    },
    15_000,
  ).catch((error) => {
    throw new Error(`${error.message}; file is ${JSON.stringify(readFileSync(file, "utf8"))}`);
  });
  log(`saved file:\n${saved}`);
  console.log("ok - ghost text from santa-lsp was shown, accepted with Tab and saved");
} catch (error) {
  failed = true;
  console.log(`not ok - ${error instanceof Error ? error.message : String(error)}`);
  const pages = browser.contexts().flatMap((context) => context.pages());
  if (pages[0]) {
    const failurePath = screenshot.replace(/\.png$/, "-failure.png");
    await pages[0].screenshot({ path: failurePath }).catch(() => undefined);
    console.error(`failure screenshot: ${failurePath}`);
  }
} finally {
  await browser.close().catch(() => undefined);
}
process.exit(failed ? 1 : 0);
