// Parses an AsyncAPI document with the official parser (@asyncapi/parser: the AsyncAPI JSON Schema
// of its version, references resolved, the AsyncAPI ruleset) and prints what it found as one JSON
// object: {"valid": bool, "version": str|null, "diagnostics": [{code, severity, path, message}]}.
// The Python test (tests/integration/test_asyncapi_document.py) decides what is acceptable.
//
//   node tools/asyncapi/validate.mjs docs/asyncapi.json
import { readFile } from "node:fs/promises";
import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const [path] = process.argv.slice(2);
if (!path) {
  console.error("usage: node validate.mjs <asyncapi document>");
  process.exit(2);
}
const { document, diagnostics } = await new Parser().parse(await readFile(path, "utf8"));
console.log(
  JSON.stringify({
    valid: document !== undefined,
    version: document ? document.version() : null,
    diagnostics: diagnostics.map((d) => ({
      code: String(d.code),
      severity: DiagnosticSeverity[d.severity],
      path: d.path.join("/"),
      message: d.message,
    })),
  }),
);
