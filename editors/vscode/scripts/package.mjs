// Build a production bundle and package it as santa-lsp.vsix (offline: no network needed).
//   npm run package [-- --out path/to/file.vsix]
import { execFileSync } from "node:child_process";
import { copyFileSync } from "node:fs";
import { join } from "node:path";

const outIndex = process.argv.indexOf("--out");
const out = outIndex > 0 ? process.argv[outIndex + 1] : "santa-lsp.vsix";
const bin = (name) => join("node_modules", ".bin", process.platform === "win32" ? `${name}.cmd` : name);

execFileSync(process.execPath, ["scripts/build.mjs", "--production"], { stdio: "inherit" });
copyFileSync(join("..", "..", "LICENSE"), "LICENSE");
// The bundle carries its dependencies, so node_modules stays out of the package.
execFileSync(
  bin("vsce"),
  ["package", "--no-dependencies", "--allow-missing-repository", "--no-rewrite-relative-links", "--no-update-package-json", "--out", out],
  { stdio: "inherit", shell: process.platform === "win32" },
);
console.log(`Packaged ${out}`);
