// Bundle the extension (dist/extension.js) or, with --tests, the unit tests (out-test/).
//   node scripts/build.mjs [--production] [--watch] [--tests]
import * as esbuild from "esbuild";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const args = new Set(process.argv.slice(2));
const production = args.has("--production");

const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "info",
};

const options = args.has("--tests")
  ? {
      ...common,
      // Unit tests cover the pure modules; a `vscode` import in them fails the build on purpose.
      entryPoints: readdirSync("test/unit")
        .filter((name) => name.endsWith(".test.ts"))
        .map((name) => join("test/unit", name)),
      outdir: "out-test",
    }
  : {
      ...common,
      entryPoints: ["src/extension.ts"],
      outfile: "dist/extension.js",
      external: ["vscode"],
      minify: production,
      sourcemap: !production,
    };

rmSync(options.outdir ?? "dist", { recursive: true, force: true });
if (args.has("--watch")) {
  await (await esbuild.context(options)).watch();
} else {
  await esbuild.build(options);
}
