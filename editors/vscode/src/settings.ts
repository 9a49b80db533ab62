// Settings -> server options and server command. Pure: no `vscode` import, so it can be unit
// tested with plain Node. `vscode.WorkspaceConfiguration` satisfies `SettingsReader`.

/** The part of `vscode.WorkspaceConfiguration` we use. */
export interface SettingsReader {
  get<T>(key: string): T | undefined;
}

/** Options sent to the server (initializationOptions / didChangeConfiguration), camelCase. */
export interface ServerOptions {
  enable: boolean;
  model: string;
  endpoint: string;
  revision: string | null;
  device: string;
  dtype: string;
  maxNewTokens: number;
  mode: string;
  fimOrder: string;
  contextBudget: number;
  suffixShare: number;
  tokenHealing: boolean;
  prefetch: boolean;
  temperature: number;
  topP: number;
  debounceMs: number;
  cacheSlots: number;
  threads: number;
  maxLatencyMs: number;
}

/** Same defaults as the server's `santa_lsp/config.py` and our package.json. */
export const DEFAULT_OPTIONS: Readonly<ServerOptions> = Object.freeze({
  enable: true,
  model: "bigcode/santacoder",
  endpoint: "",
  revision: null,
  device: "auto",
  dtype: "auto",
  maxNewTokens: 64,
  mode: "auto",
  fimOrder: "spm",
  contextBudget: 0,
  suffixShare: 0.25,
  tokenHealing: true,
  prefetch: false,
  temperature: 0,
  topP: 1,
  debounceMs: 0,
  cacheSlots: 4,
  threads: 0,
  maxLatencyMs: -1,
});

export interface ServerCommand {
  command: string;
  args: string[];
}

/** Everything the extension needs from the `santa.*` settings. */
export interface Settings {
  options: ServerOptions;
  server: ServerCommand;
  documentSelector: string[];
}

export const SECTION = "santa";

export function defaultPython(platform: string = process.platform): string {
  return platform === "win32" ? "python" : "python3";
}

/**
 * Read the settings. Values of the wrong type fall back to the default, so one typo in
 * settings.json does not stop the server; the server validates ranges and reports them.
 */
export function readSettings(config: SettingsReader, platform: string = process.platform): Settings {
  const options = { ...DEFAULT_OPTIONS } as ServerOptions;
  const target = options as unknown as Record<string, unknown>;
  for (const [key, fallback] of Object.entries(DEFAULT_OPTIONS)) {
    const value = config.get<unknown>(key);
    if (key === "revision") {
      target[key] = typeof value === "string" && value.trim() !== "" ? value.trim() : null;
    } else if (typeof value === typeof fallback && !(typeof value === "number" && !Number.isFinite(value))) {
      target[key] = typeof value === "string" ? value.trim() || fallback : value;
    }
  }
  return {
    options,
    server: serverCommand(config, platform),
    documentSelector: stringList(config.get<unknown>("documentSelector")) ?? ["*"],
  };
}

/** `santa.serverCommand` when set, else `<santa.pythonPath or python3> -m santa_lsp serve --stdio`. */
export function serverCommand(config: SettingsReader, platform: string = process.platform): ServerCommand {
  const explicit = stringList(config.get<unknown>("serverCommand"))?.filter((part) => part.trim() !== "");
  if (explicit && explicit.length > 0) {
    return { command: explicit[0], args: explicit.slice(1) };
  }
  const python = config.get<unknown>("pythonPath");
  const interpreter = typeof python === "string" && python.trim() !== "" ? python.trim() : defaultPython(platform);
  return { command: interpreter, args: ["-m", "santa_lsp", "serve", "--stdio"] };
}

/**
 * Whether going from `before` to `after` needs a new server process. Everything in
 * `options` is applied live by the server (a model change reloads the model in place).
 */
export function needsRestart(before: Settings, after: Settings): boolean {
  return (
    before.server.command !== after.server.command ||
    !sameList(before.server.args, after.server.args) ||
    !sameList(before.documentSelector, after.documentSelector)
  );
}

/** The human-readable command line, for messages. */
export function formatCommand(server: ServerCommand): string {
  return [server.command, ...server.args].map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(" ");
}

/**
 * Message for a server that could not be started, with the fix. `stderr` is what the
 * process wrote before it died, if anything.
 */
export function startFailureMessage(server: ServerCommand, error: unknown, stderr = ""): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  const install =
    "Install the server ('pip install santa-lsp', or 'pip install -e .' in a checkout) and " +
    "set 'santa.pythonPath' to that Python interpreter, or set 'santa.serverCommand' to the " +
    'full command (for example ["/path/to/santa-lsp", "serve", "--stdio"]).';
  if (code === "ENOENT") {
    return `Santa: cannot start the server: '${server.command}' was not found. ${install}`;
  }
  const missing = /No module named '?([\w.]+)/.exec(stderr)?.[1];
  if (missing === "santa_lsp") {
    return `Santa: '${server.command}' has no santa_lsp module. ${install}`;
  }
  if (missing) {
    return `Santa: '${server.command}' cannot run the server: No module named '${missing}'. ${install}`;
  }
  const detail = error instanceof Error ? error.message : String(error ?? "it exited");
  return (
    `Santa: the server '${formatCommand(server)}' failed to start (${detail}). ` +
    "Run 'Santa: Show Logs' for its output, fix the cause, then 'Santa: Restart Server'."
  );
}

function stringList(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((item) => typeof item === "string") ? [...value] : undefined;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}
