// The wire-frame typedefs of src/chat.js, generated from docs/asyncapi.json (the server's own
// machine-readable protocol), so the SDK's frame types cannot drift from the server's.
// Used by scripts/build.mjs; `npm run check` fails while src/chat.js holds other typedefs.

import { readFileSync } from "node:fs";

export const BEGIN = "// <generated-frames> from docs/asyncapi.json by scripts/build.mjs: do not edit by hand";
export const END = "// </generated-frames>";

/**
 * @param {any} document the AsyncAPI document
 * @param {string} ref a local JSON pointer ("#/components/schemas/X")
 */
function resolve(document, ref) {
  if (!ref.startsWith("#/")) throw new Error(`unsupported $ref ${ref}`);
  return ref
    .slice(2)
    .split("/")
    .reduce((node, key) => node[key.replace(/~1/g, "/").replace(/~0/g, "~")], document);
}

/** @param {string} ref */
const refName = (ref) => ref.slice(ref.lastIndexOf("/") + 1);

/**
 * The JSDoc type of a JSON Schema.
 * @param {any} schema
 * @returns {string}
 */
function typeOf(schema) {
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.map((/** @type {unknown} */ v) => JSON.stringify(v)).join(" | ");
  if (schema.anyOf) return [...new Set(schema.anyOf.map(typeOf))].join(" | ");
  switch (schema.type) {
    case "integer":
    case "number":
      return "number";
    case "string":
      return "string";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array": {
      const item = typeOf(schema.items ?? {});
      return `Array<${item}>`;
    }
    case "object":
      return "Record<string, unknown>";
    default:
      return "unknown";
  }
}

/** @param {string} text */
const oneLine = (text) => text.replace(/\s+/g, " ").replace(/\*\//g, "*\\/").trim();

/**
 * The typedef block for every schema and the ClientFrame / ServerFrame unions.
 * @param {string} asyncapiPath
 * @returns {string}
 */
export function generate(asyncapiPath) {
  const document = JSON.parse(readFileSync(asyncapiPath, "utf8"));
  const schemas = document.components.schemas;
  const lines = [BEGIN];
  for (const name of Object.keys(schemas).sort()) {
    const schema = schemas[name];
    lines.push("/**");
    if (schema.description) lines.push(` * ${oneLine(schema.description.split("\n")[0])}`);
    if (schema.type === "object") {
      lines.push(` * @typedef {Object} ${name}`);
      const required = new Set(schema.required ?? []);
      for (const [property, propertySchema] of Object.entries(schema.properties ?? {})) {
        const key = required.has(property) ? property : `[${property}]`;
        lines.push(` * @property {${typeOf(propertySchema)}} ${key}`);
      }
    } else {
      lines.push(` * @typedef {${typeOf(schema)}} ${name}`);
    }
    lines.push(" */");
  }
  /** @type {Set<string>} */
  const client = new Set();
  /** @type {Set<string>} */
  const server = new Set();
  /** @param {any} messageRef */
  const payloadOf = (messageRef) => refName(resolve(document, messageRef.$ref).payload.$ref);
  for (const operation of Object.values(document.operations)) {
    const op = /** @type {any} */ (operation);
    for (const message of op.messages) (op.action === "send" ? client : server).add(payloadOf(message));
    for (const message of op.reply?.messages ?? []) server.add(payloadOf(message));
  }
  lines.push(`/** A frame the client sends. @typedef {${[...client].sort().join(" | ")}} ClientFrame */`);
  lines.push(`/** A frame the server sends. @typedef {${[...server].sort().join(" | ")}} ServerFrame */`);
  lines.push(END);
  return lines.join("\n");
}

/**
 * `source` with its generated region replaced by `block`.
 * @param {string} source
 * @param {string} block
 */
export function splice(source, block) {
  const start = source.indexOf(BEGIN);
  const end = source.indexOf(END);
  if (start < 0 || end < start) throw new Error("src/chat.js has no generated-frames region");
  return source.slice(0, start) + block + source.slice(end + END.length);
}
