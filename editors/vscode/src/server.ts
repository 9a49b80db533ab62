// Server process and LanguageClient: start, restart, stop, settings, status and progress.
import { ChildProcess, spawn } from "child_process";
import * as os from "os";
import * as readline from "readline";
import * as vscode from "vscode";
import {
  CloseAction,
  DidChangeConfigurationNotification,
  DocumentSelector,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  LogMessageNotification,
  ServerOptions,
  State,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
} from "vscode-languageclient/node";
import { SECTION, Settings, ServerCommand, formatCommand, startFailureMessage } from "./settings";
import { formatStatusReport, parseStatus, statusSummary } from "./status";
import { StatusBar } from "./statusBar";

const STATUS_NOTIFICATION = "santa/status";
const STDERR_TAIL_LINES = 40;
// Like the library's default: restart a crashed server, but stop after a few quick crashes,
// with a message of our own that says where to look.
const MAX_CRASHES = 3;
const CRASH_WINDOW_MS = 3 * 60 * 1000;

export class SantaServer implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private settings: Settings | undefined;
  private stderrTail: string[] = [];
  private crashes: number[] = [];
  private clientDisposables: vscode.Disposable[] = [];
  private process: ChildProcess | undefined;
  // A server that never initialized is not restarted: it would fail the same way again.
  private initialized = false;
  private lastState: string | undefined;

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly statusBar: StatusBar,
  ) {}

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  async start(settings: Settings): Promise<void> {
    await this.stop();
    this.settings = settings;
    this.stderrTail = [];
    this.process = undefined;
    this.initialized = false;
    this.statusBar.update({ state: "starting" });
    this.log.info(`Starting ${formatCommand(settings.server)}`);

    const client = new SantaLanguageClient(() => this.spawn(settings.server), this.clientOptions(settings));
    this.client = client;
    this.clientDisposables.push(
      client.onNotification(STATUS_NOTIFICATION, (params: unknown) => this.onStatus(parseStatus(params))),
      // The server logs every window/logMessage on stderr too, and stderr is in our log already.
      client.onNotification(LogMessageNotification.type, () => undefined),
      client.onDidChangeState((event) => {
        if (event.newState === State.Stopped && this.client === client) {
          this.statusBar.update({ state: "stopped", message: "The server is not running." });
        }
      }),
    );
    try {
      await client.start();
    } catch (error) {
      if (this.client !== client) return; // superseded by a newer start
      await this.processClosed(1000); // its last stderr lines usually say why
      const message = startFailureMessage(settings.server, error, this.stderrTail.join("\n"));
      this.log.error(message);
      this.statusBar.update({ state: "error", message });
      void this.showError(message);
      this.forgetClient();
      return;
    }
    if (this.client !== client) {
      await client.stop(2000).catch(() => undefined); // a newer start() took over meanwhile
      return;
    }
    this.initialized = true;
    // After start(): our handler replaces the default one, which only shows a notification.
    this.clientDisposables.push(
      client.onRequest(WorkDoneProgressCreateRequest.type, (params) => this.trackProgress(client, params.token)),
    );
    await this.refreshStatus();
  }

  /** A status notification: update the status bar; when the model becomes ready, ask again
   * for the active editor (the server answers requests made while it loaded, but an editor
   * that gave up meanwhile would show nothing until the next keystroke). */
  private onStatus(status: ReturnType<typeof parseStatus>): void {
    const wasReady = this.lastState === "ready";
    this.lastState = status.state;
    this.statusBar.update(status);
    if (status.state === "ready" && !wasReady && vscode.window.activeTextEditor) {
      void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger").then(undefined, () => undefined);
    }
  }

  async restart(settings: Settings | undefined = this.settings): Promise<void> {
    if (settings) await this.start(settings);
  }

  async stop(): Promise<void> {
    const client = this.forgetClient();
    // A client still starting is stopped by its own start() once it is up.
    if (client?.state === State.Running) {
      try {
        await client.stop(2000);
      } catch (error) {
        this.log.warn(`Stopping the server: ${String(error)}`);
      }
    }
  }

  private forgetClient(): LanguageClient | undefined {
    const client = this.client;
    this.client = undefined;
    this.clientDisposables.forEach((disposable) => disposable.dispose());
    this.clientDisposables = [];
    return client;
  }

  /** Send changed options; the server applies them live (a model change reloads the model). */
  async applySettings(settings: Settings): Promise<void> {
    this.settings = settings;
    if (!this.client || !this.running) return;
    await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: settings.options });
  }

  /** Result of the server's `santa.status` command. */
  async queryStatus(): Promise<unknown> {
    if (!this.client || !this.running) {
      throw new Error("the server is not running");
    }
    return this.client.sendRequest(ExecuteCommandRequest.type, { command: "santa.status", arguments: [] });
  }

  /** The `santa.showStatus` command: ask the server, log the full report, show a summary. */
  async showStatus(): Promise<void> {
    let status = this.statusBar.current;
    try {
      const result = await this.queryStatus();
      this.log.info(`santa.status:\n${formatStatusReport(result)}`);
      status = parseStatus(result);
      this.statusBar.update(status);
    } catch (error) {
      this.log.warn(`santa.status: ${String(error)}`);
    }
    const choice = await vscode.window.showInformationMessage(statusSummary(status), "Show Logs", "Restart Server");
    if (choice === "Show Logs") this.log.show();
    if (choice === "Restart Server") await this.restart();
  }

  async dispose(): Promise<void> {
    await this.stop();
  }

  private async refreshStatus(): Promise<void> {
    try {
      const result = await this.queryStatus();
      // A notification may have arrived meanwhile; it is newer than nothing, older than this.
      this.statusBar.update(parseStatus(result));
    } catch (error) {
      this.log.warn(`santa.status failed: ${String(error)}`);
    }
  }

  private clientOptions(settings: Settings): LanguageClientOptions {
    return {
      documentSelector: documentSelector(settings.documentSelector),
      initializationOptions: settings.options,
      outputChannel: this.log,
      traceOutputChannel: this.log,
      stdioOptions: {
        stdout: () => undefined, // stdout is the protocol; never read here
        stderr: (input) => this.pipeStderr(input),
      },
      middleware: {
        workspace: {
          // A server that pulls `santa` gets the same mapped options that we push.
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            if (!Array.isArray(result)) return result;
            return params.items.map((item, index) =>
              item.section === SECTION ? (this.settings ?? settings).options : result[index],
            );
          },
        },
      },
      initializationFailedHandler: (error) => {
        this.log.error(`Initialization failed: ${String(error)}`);
        return false;
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          if (!this.initialized) return { action: CloseAction.DoNotRestart, handled: true };
          const now = Date.now();
          this.crashes = [...this.crashes.filter((at) => now - at < CRASH_WINDOW_MS), now];
          if (this.crashes.length <= MAX_CRASHES) {
            this.log.warn("The server stopped unexpectedly; restarting it.");
            return { action: CloseAction.Restart, handled: true };
          }
          const message =
            `Santa: the server stopped ${this.crashes.length} times in a few minutes and will not be restarted. ` +
            "Run 'Santa: Show Logs' to see why, then 'Santa: Restart Server'.";
          this.statusBar.update({ state: "error", message });
          void this.showError(message);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
  }

  /** Resolves when the server process has exited and its output is read, or after `ms`. */
  private processClosed(ms: number): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      child.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async spawn(server: ServerCommand): Promise<ChildProcess> {
    const child = spawn(server.command, server.args, {
      // Not the extension host's own directory: `python -m` would import from there.
      cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? os.homedir(),
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.process = child;
    // Resolve only once the OS has started it, so a missing command rejects start() with ENOENT.
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", () => resolve());
      child.once("error", reject);
    });
    child.on("exit", (code, signal) => this.log.info(`Server exited (code ${code}, signal ${signal})`));
    return child;
  }

  private pipeStderr(input: NodeJS.ReadableStream): void {
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (line: string) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      // Server log lines carry their own level; keep it instead of marking everything an error.
      if (/\b(ERROR|CRITICAL|Traceback)\b/.test(line)) this.log.error(line);
      else if (/\bWARNING\b/.test(line)) this.log.warn(line);
      else if (/\bDEBUG\b/.test(line)) this.log.debug(line);
      else this.log.info(line);
    });
  }

  private trackProgress(client: LanguageClient, token: string | number): void {
    const subscription = client.onProgress(WorkDoneProgress.type, token, (value) => {
      if (value.kind === "end") {
        this.statusBar.setProgress(undefined);
        subscription.dispose();
        return;
      }
      // A report may leave out the message or the percentage: keep the last ones.
      const last = this.statusBar.progress;
      this.statusBar.setProgress({
        title: value.kind === "begin" ? value.title : last?.title,
        message: value.message ?? last?.message,
        percentage: value.percentage ?? last?.percentage,
      });
    });
    this.clientDisposables.push(subscription);
  }

  private async showError(message: string): Promise<void> {
    const choice = await vscode.window.showErrorMessage(message, "Show Logs", "Open Settings");
    if (choice === "Show Logs") this.log.show();
    if (choice === "Open Settings") await vscode.commands.executeCommand("workbench.action.openSettings", "santa.");
  }
}

function documentSelector(languages: readonly string[]): DocumentSelector {
  const schemes = ["file", "untitled"];
  if (languages.includes("*")) return schemes.map((scheme) => ({ scheme }));
  return languages.flatMap((language) => schemes.map((scheme) => ({ scheme, language })));
}

/** A LanguageClient that leaves start-up failures to us: one message, with the fix. */
class SantaLanguageClient extends LanguageClient {
  constructor(serverOptions: ServerOptions, clientOptions: LanguageClientOptions) {
    super("santa", "Santa LSP", serverOptions, clientOptions);
  }

  override error(message: string, data?: unknown, showNotification: boolean | "force" = true): void {
    // Failures before the client runs ("couldn't create connection") are reported by
    // SantaServer.start() with what to do; the generic pop-up would only repeat them.
    super.error(message, data, this.state === State.Running ? showNotification : false);
  }
}
