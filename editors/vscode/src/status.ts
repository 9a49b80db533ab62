// What the status bar says. Pure: no `vscode` import (see statusBar.ts for the item itself).

export type ServerState = "starting" | "loading" | "ready" | "busy" | "error" | "disabled" | "stopped";

const STATES: readonly ServerState[] = ["starting", "loading", "ready", "busy", "error", "disabled", "stopped"];

/** Payload of the server's `santa/status` notification (and the core of `santa.status`). */
export interface ServerStatus {
  state: ServerState;
  model?: string;
  device?: string;
  dtype?: string;
  message?: string;
}

/** Latest `$/progress` report of a work-done progress (model download / load). */
export interface Progress {
  title?: string;
  message?: string;
  percentage?: number;
}

export type Severity = "normal" | "warning" | "error";

export interface StatusView {
  text: string;
  tooltip: string;
  severity: Severity;
}

/** Accept whatever the server sent; unknown states read as errors so they are noticed. */
export function parseStatus(raw: unknown): ServerStatus {
  const value = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const text = (key: string): string | undefined =>
    typeof value[key] === "string" && value[key] !== "" ? (value[key] as string) : undefined;
  const state = text("state");
  const known = STATES.includes(state as ServerState);
  return {
    state: known ? (state as ServerState) : "error",
    model: text("model"),
    device: text("device"),
    dtype: text("dtype"),
    message: known ? text("message") : `unexpected server state '${state ?? ""}'`,
  };
}

/** `bigcode/santacoder` -> `santacoder`, `/models/my-model/` -> `my-model`. */
export function shortModelName(model: string): string {
  const parts = model.split(/[\\/]/).filter((part) => part !== "");
  return parts.length > 0 ? parts[parts.length - 1] : model;
}

export function describeStatus(status: ServerStatus, progress?: Progress): StatusView {
  const model = status.model ? shortModelName(status.model) : undefined;
  const where = [status.device, status.dtype].filter(Boolean).join(", ");
  const lines = [`Santa LSP: ${status.state}`];
  if (status.model) lines.push(`Model: ${status.model}`);
  if (where) lines.push(`Device: ${where}`);
  if (status.message) lines.push(status.message);
  if (progress?.message && progress.message !== status.message) lines.push(progress.message);
  lines.push("", "Click for details");
  const tooltip = lines.join("\n");

  switch (status.state) {
    case "starting":
      return { text: "$(loading~spin) Santa: starting", tooltip, severity: "normal" };
    case "loading": {
      const percent =
        progress?.percentage !== undefined ? ` ${Math.max(0, Math.min(100, Math.round(progress.percentage)))}%` : "";
      const what = model ? ` ${model}` : "";
      return { text: `$(loading~spin) Santa: loading${what}${percent}`, tooltip, severity: "normal" };
    }
    case "ready":
    case "busy": {
      const icon = status.state === "busy" ? "$(sync~spin)" : "$(sparkle)";
      const label = [model, status.device].filter(Boolean).join(" · ") || status.state;
      return { text: `${icon} Santa: ${label}`, tooltip, severity: "normal" };
    }
    case "disabled":
      return { text: "$(circle-slash) Santa: off", tooltip, severity: "normal" };
    case "stopped":
      return { text: "$(debug-disconnect) Santa: stopped", tooltip, severity: "warning" };
    case "error":
      return { text: "$(error) Santa: error", tooltip, severity: "error" };
  }
}

/** One line for a message: "Santa LSP: ready · Model: bundled · Device: cpu, float32". */
export function statusSummary(status: ServerStatus): string {
  const lines = describeStatus(status).tooltip.split("\n");
  return lines.filter((line) => line !== "" && line !== "Click for details").join(" · ");
}

/** Multi-line report of a `santa.status` result, for the log and the details message. */
export function formatStatusReport(raw: unknown): string {
  if (typeof raw !== "object" || raw === null) return `Santa LSP: ${JSON.stringify(raw)}`;
  const lines: string[] = [];
  const walk = (value: unknown, indent: string): void => {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (typeof item === "object" && item !== null && !Array.isArray(item)) {
        lines.push(`${indent}${key}:`);
        walk(item, `${indent}  `);
      } else {
        lines.push(`${indent}${key}: ${Array.isArray(item) ? JSON.stringify(item) : String(item)}`);
      }
    }
  };
  walk(raw, "");
  return lines.join("\n");
}
