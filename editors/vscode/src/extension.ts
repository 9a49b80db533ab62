// Entry point: only wires settings, server, status bar and commands together.
import * as vscode from "vscode";
import { SantaServer } from "./server";
import { SECTION, Settings, needsRestart, readSettings } from "./settings";
import { StatusBar } from "./statusBar";

let server: SantaServer | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel("Santa LSP", { log: true });
  const statusBar = new StatusBar("santa.showStatus");
  server = new SantaServer(log, statusBar);
  const santa = server;
  let settings: Settings = readSettings(vscode.workspace.getConfiguration(SECTION));
  statusBar.setEnabled(settings.options.enable);

  context.subscriptions.push(
    log,
    statusBar,
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration(SECTION)) return;
      const next = readSettings(vscode.workspace.getConfiguration(SECTION));
      const restart = needsRestart(settings, next);
      settings = next;
      statusBar.setEnabled(next.options.enable);
      if (restart) {
        log.info("The server command changed; restarting the server.");
        await santa.restart(next);
      } else {
        await santa.applySettings(next);
      }
    }),
    vscode.commands.registerCommand("santa.enable", () => setEnabled(true)),
    vscode.commands.registerCommand("santa.disable", () => setEnabled(false)),
    vscode.commands.registerCommand("santa.toggle", () => setEnabled(!settings.options.enable)),
    vscode.commands.registerCommand("santa.restartServer", () => santa.restart(settings)),
    vscode.commands.registerCommand("santa.showLogs", () => log.show()),
    vscode.commands.registerCommand("santa.showStatus", () => santa.showStatus()),
  );

  await santa.start(settings);
}

export async function deactivate(): Promise<void> {
  await server?.dispose();
  server = undefined;
}

/** Flip `santa.enable` where it is actually set, so a workspace value does not mask the change. */
async function setEnabled(enabled: boolean): Promise<void> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const inspected = config.inspect<boolean>("enable");
  const target =
    inspected?.workspaceFolderValue !== undefined
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : inspected?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
  await config.update("enable", enabled, target);
}
