// The status bar item: renders describeStatus() and opens the status details on click.
import * as vscode from "vscode";
import { describeStatus, Progress, ServerStatus, StatusView } from "./status";

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private status: ServerStatus = { state: "starting" };
  private currentProgress: Progress | undefined;
  private enabled = true;

  constructor(clickCommand: string) {
    this.item = vscode.window.createStatusBarItem("santa.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "Santa LSP";
    this.item.command = clickCommand;
    this.render();
    this.item.show();
  }

  get current(): ServerStatus {
    return this.status;
  }

  get progress(): Progress | undefined {
    return this.currentProgress;
  }

  update(status: ServerStatus): void {
    this.status = status;
    if (status.state !== "loading") this.currentProgress = undefined;
    this.render();
  }

  setProgress(progress: Progress | undefined): void {
    this.currentProgress = progress;
    this.render();
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  dispose(): void {
    this.item.dispose();
  }

  private render(): void {
    const active = this.status.state === "ready" || this.status.state === "busy";
    const shown = !this.enabled && active ? { ...this.status, state: "disabled" as const } : this.status;
    const view: StatusView = describeStatus(shown, this.currentProgress);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.severity === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.severity === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }
}
