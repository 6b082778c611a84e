// Validates schema/openapi.yaml against the OpenAPI 3.0 specification
// (structure, $refs, path parameters) and compiles every schema with ajv.
// Usage: node tests/api/validate-spec.mjs [path/to/openapi.yaml]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import SwaggerParser from '@apidevtools/swagger-parser';
import { loadSpec } from './lib/spec.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] ?? path.join(here, '..', '..', 'schema', 'openapi.yaml');

try {
  const api = await SwaggerParser.validate(file);
  const spec = await loadSpec(file);
  const compiled = spec.compileAll();
  const operations = Object.values(api.paths)
    .flatMap((item) => Object.keys(item).filter((k) => spec.methods.includes(k))).length;
  console.log(`ok: ${file} is valid OpenAPI ${api.openapi}: ${Object.keys(api.paths).length} paths, ` +
    `${operations} operations, ${compiled} response/component schemas compiled`);
} catch (error) {
  console.error(`FAIL: ${file}: ${error.message}`);
  process.exit(1);
}
