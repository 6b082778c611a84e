// The OpenAPI document as a response checker: finds the operation of a
// request by method and path template, picks the documented response by
// status code and validates headers and body with ajv.
import fs from 'node:fs/promises';
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const DROPPED_KEYWORDS = ['discriminator', 'example', 'xml', 'externalDocs', 'deprecated'];

// OpenAPI 3.0 schema objects are not JSON Schema: `nullable` has to become a
// null type, and a few OpenAPI-only keywords are dropped.
function toJsonSchema(schema) {
  if (Array.isArray(schema)) return schema.map(toJsonSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (DROPPED_KEYWORDS.includes(key) || key === 'nullable') continue;
    if (key === 'properties' || key === 'patternProperties') {
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonSchema(v)]));
    } else {
      out[key] = toJsonSchema(value);
    }
  }
  if (schema.nullable === true) {
    if (typeof out.type === 'string') {
      out.type = [out.type, 'null'];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    } else {
      return { anyOf: [out, { type: 'null' }] };
    }
  }
  return out;
}

function templateRegex(template) {
  const escaped = template
    .split(/(\{[^}]+\})/)
    .map((part) => (part.startsWith('{') ? '([^/]+)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${escaped}$`);
}

export async function loadSpec(file) {
  const text = await fs.readFile(file, 'utf8');
  const raw = YAML.parse(text);
  const api = await SwaggerParser.dereference(structuredClone(raw));
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isSafeInteger(n) });
  ajv.addFormat('int32', { type: 'number', validate: (n) => Number.isInteger(n) && Math.abs(n) <= 2 ** 31 });
  const compiled = new WeakMap();

  const templates = Object.keys(api.paths).map((template) => ({
    template,
    regex: templateRegex(template),
    params: (template.match(/\{/g) || []).length,
  }));
  templates.sort((a, b) => a.params - b.params);

  function validator(schema) {
    let fn = compiled.get(schema);
    if (!fn) {
      fn = ajv.compile(toJsonSchema(schema));
      compiled.set(schema, fn);
    }
    return fn;
  }

  function describeErrors(errors) {
    return (errors || [])
      .slice(0, 8)
      .map((e) => `${e.instancePath || '/'} ${e.message}${e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''}`)
      .join('; ');
  }

  return {
    raw,
    api,
    methods: METHODS,
    text,

    // Compiles every response schema and every component schema; returns how many.
    compileAll() {
      let count = 0;
      for (const item of Object.values(api.paths)) {
        for (const method of METHODS) {
          for (const response of Object.values(item[method]?.responses || {})) {
            for (const media of Object.values(response.content || {})) {
              if (media.schema) { validator(media.schema); count += 1; }
            }
          }
        }
      }
      for (const schema of Object.values(api.components.schemas)) { validator(schema); count += 1; }
      return count;
    },

    // The path template and operation for a request; operation is null when
    // the path exists but not the method; null when no template matches.
    find(method, pathname) {
      for (const { template, regex } of templates) {
        if (regex.test(pathname)) {
          const item = api.paths[template];
          return {
            template,
            operation: item[method.toLowerCase()] || null,
            allowed: METHODS.filter((m) => item[m]).map((m) => m.toUpperCase()),
          };
        }
      }
      return null;
    },

    // Validates a value against a named component schema; returns a problem string or null.
    validateSchema(name, value) {
      const schema = api.components.schemas[name];
      if (!schema) return `no schema named ${name}`;
      const fn = validator(schema);
      return fn(value) ? null : `${name}: ${describeErrors(fn.errors)}`;
    },

    // Every way a response departs from the document; [] when it matches.
    // `headers` has lower-case names; `body` is the raw text.
    checkResponse(method, pathname, status, headers, body) {
      const problems = [];
      const found = this.find(method, pathname);
      let response;
      let where;
      if (!found) {
        where = `${method} ${pathname} (no such path)`;
        if (status !== 404) return [`${where}: expected 404 for an undocumented path, got ${status}`];
        response = api.components.responses.NotFound;
      } else if (!found.operation) {
        where = `${method} ${found.template} (method not in the document)`;
        if (status !== 405) return [`${where}: expected 405, got ${status}`];
        response = api.components.responses.MethodNotAllowed;
      } else {
        where = `${method} ${found.template}`;
        const responses = found.operation.responses;
        response = responses[String(status)] || responses[`${String(status)[0]}XX`];
        if (!response) {
          return [`${where}: status ${status} is not documented (documented: ${Object.keys(responses).join(', ')})`];
        }
      }

      for (const [name, header] of Object.entries(response.headers || {})) {
        const value = headers[name.toLowerCase()];
        if (value === undefined) {
          if (header.required) problems.push(`${where} ${status}: required header ${name} is missing`);
          continue;
        }
        if (header.schema?.type === 'integer' && !/^-?[0-9]+$/.test(String(value).trim())) {
          problems.push(`${where} ${status}: header ${name} "${value}" is not an integer`);
        } else if (header.schema) {
          const parsed = header.schema.type === 'integer' ? Number(value) : value;
          const fn = validator(header.schema);
          if (!fn(parsed)) problems.push(`${where} ${status}: header ${name} "${value}": ${describeErrors(fn.errors)}`);
        }
      }

      const content = response.content;
      if (!content) {
        if (body && body.length > 0 && status !== 101) {
          problems.push(`${where} ${status}: documented without a body, got ${body.length} bytes`);
        }
        return problems;
      }
      const contentType = (headers['content-type'] || '').split(';')[0].trim().toLowerCase();
      // A media range (`*/*`: a file's bytes in its own media type) takes any type.
      const media = content[contentType] || content['*/*'];
      if (!media) {
        problems.push(`${where} ${status}: Content-Type "${headers['content-type'] || ''}" is not one of ${Object.keys(content).join(', ')}`);
        return problems;
      }
      if (contentType === 'application/json' && content[contentType]) {
        let value;
        try {
          value = JSON.parse(body);
        } catch (error) {
          problems.push(`${where} ${status}: body is not JSON: ${String(body).slice(0, 120)}`);
          return problems;
        }
        if (media.schema) {
          const fn = validator(media.schema);
          if (!fn(value)) problems.push(`${where} ${status}: body does not match the schema: ${describeErrors(fn.errors)}`);
        }
      }
      return problems;
    },
  };
}
