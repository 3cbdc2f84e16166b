// Schema validation: bodies are strict (no type coercion), query/params/headers coerce strings; unknown fields are dropped.
import AjvModule from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifySchemaCompiler } from 'fastify'

function makeAjv (coerceTypes: boolean | 'array') {
  const Ajv = AjvModule.default
  const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: 'all', allErrors: false, strict: false })
  addFormats.default(ajv)
  return ajv
}

export function validatorCompiler (): FastifySchemaCompiler<unknown> {
  const strict = makeAjv(false)
  const coercing = makeAjv('array')
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object)
}
