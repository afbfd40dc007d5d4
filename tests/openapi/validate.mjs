// Validates docs/openapi.yaml, with the packages pinned by package-lock.json (installed by
// scripts/test):
// - the document against the OpenAPI 3.1 specification (@readme/openapi-parser: its schema,
//   every $ref, unique operationIds, path parameters declared and required);
// - every Schema Object in it against JSON Schema 2020-12 (Ajv, strict), which the OpenAPI
//   schema leaves unchecked: a misspelt type or keyword fails here;
// - every `examples` entry of a component schema against that schema.
// Usage: node validate.mjs SOURCE_DIR. Exits 1 with the errors found, and also when a
// package is not installed: a missing validator is a failure, never a skip.
import path from 'node:path';
import process from 'node:process';

const sourceDir = process.argv[2];
if (!sourceDir) {
  console.error('usage: node validate.mjs SOURCE_DIR');
  process.exit(2);
}
const file = path.resolve(sourceDir, 'docs/openapi.yaml');

let parser;
let Ajv2020;
try {
  parser = await import('@readme/openapi-parser');
  Ajv2020 = (await import('ajv/dist/2020.js')).default;
} catch (e) {
  console.error(`a validator is not installed: run (cd tests/openapi && npm ci)\n${e.message}`);
  process.exit(1);
}

function fail(message) {
  console.error(`${file}: ${message}`);
  process.exit(1);
}

let document;
let result;
try {
  document = await parser.parse(file);  // YAML read; a $ref that points nowhere fails
  result = await parser.validate(file);
} catch (e) {
  fail(e.message);
}
if (!result.valid) fail(`\n${parser.compileErrors(result)}`);
if (result.warnings.length > 0) fail(`warnings count as errors here\n${parser.compileErrors(result)}`);
if (document.openapi !== '3.1.0') {
  fail(`openapi is ${JSON.stringify(document.openapi)}, expected "3.1.0"`);
}

// The Schema Objects outside components/schemas: under parameters, headers and media types.
function inlineSchemas(node, where, out) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => inlineSchemas(v, `${where}/${i}`, out));
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'schema' && value && typeof value === 'object') {
        out.push([`${where}/schema`, value]);
      } else if (key !== 'schemas' && key !== 'examples' && key !== 'example') {
        inlineSchemas(value, `${where}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`, out);
      }
    }
  }
  return out;
}

// The component schemas as one JSON Schema resource, `components`, their refs rewritten to
// point into it; then each schema is compiled on its own, so that an error names it.
const toComponents = (value) =>
  JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"components#/$defs/'));
const components = toComponents(document.components?.schemas ?? {});
const inline = inlineSchemas({paths: document.paths, components: document.components}, '#', []);

// strictTypes and strictRequired are off: `required` in an allOf or oneOf branch, beside
// the properties it names, is ordinary JSON Schema. Unknown keywords and formats still fail.
const ajv = new Ajv2020({strict: true, strictTypes: false, strictRequired: false,
                         allowUnionTypes: true, validateFormats: false, allErrors: true});
// The OpenAPI dialect's own keywords (OpenAPI 3.1, Schema Object).
for (const keyword of ['discriminator', 'xml', 'externalDocs', 'example']) {
  ajv.addKeyword({keyword});
}
try {
  ajv.addSchema({$id: 'components', $defs: components});
} catch (e) {
  fail(`components/schemas is not valid JSON Schema 2020-12: ${e.message}`);
}
const compiled = {};
for (const name of Object.keys(components)) {
  try {
    compiled[name] = ajv.compile({$ref: `components#/$defs/${name}`});
  } catch (e) {
    fail(`#/components/schemas/${name} is not valid JSON Schema 2020-12: ${e.message}`);
  }
}
for (const [where, schema] of inline) {
  try {
    ajv.compile(toComponents(schema));
  } catch (e) {
    fail(`${where} is not valid JSON Schema 2020-12: ${e.message}`);
  }
}

let examples = 0;
for (const [name, schema] of Object.entries(components)) {
  for (const example of schema.examples ?? []) {
    ++examples;
    if (!compiled[name](example)) {
      fail(`an example of #/components/schemas/${name} does not match it: ` +
           `${ajv.errorsText(compiled[name].errors)}\n${JSON.stringify(example)}`);
    }
  }
}

console.log(`${file}: valid OpenAPI ${document.openapi}: ${Object.keys(document.paths).length} ` +
            `paths, ${Object.keys(components).length} component and ${inline.length} inline ` +
            `schemas, ${examples} schema examples`);
