// Renders the merged OpenAPI document as docs/api.md: a readable reference of every public route, written by `pnpm docs:api`.
import { ErrorCodes } from '@chat-platform/contracts'

type Json = Record<string, any>
const METHODS = ['get', 'post', 'put', 'patch', 'delete']

/** A schema as a short type: `{a, b?}` for objects, `[x]` for arrays, `$ref` names kept. */
function shape (schema: Json | undefined, components: Json, depth = 0): string {
  if (!schema) return '–'
  if (schema.$ref) {
    const name = String(schema.$ref).split('/').pop()!
    return depth > 0 ? name : shape(components[name], components, depth + 1)
  }
  if (schema.anyOf || schema.oneOf) return (schema.anyOf ?? schema.oneOf).map((s: Json) => shape(s, components, depth + 1)).join(' \\| ')
  if (schema.type === 'array') return `[${shape(schema.items, components, depth + 1)}]`
  if (schema.type === 'object' || schema.properties) {
    const required = new Set<string>(schema.required ?? [])
    const keys = Object.keys(schema.properties ?? {})
    if (keys.length === 0) return '{}'
    return `{${keys.map((k) => required.has(k) ? k : `${k}?`).join(', ')}}`
  }
  if (schema.enum) return schema.enum.map((v: unknown) => JSON.stringify(v)).join(' \\| ')
  if (schema.const !== undefined) return JSON.stringify(schema.const)
  return Array.isArray(schema.type) ? schema.type.join(' \\| ') : String(schema.type ?? 'any')
}

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ')

export function renderApiMarkdown (doc: Json): string {
  const components = doc.components?.schemas ?? {}
  const lines: string[] = [
    '# HTTP API reference',
    '',
    'Generated from the route schemas (`docs/openapi.json` is the same API as OpenAPI 3; the running gateway serves it at',
    '`GET /docs`). Regenerate both with `pnpm docs:api` after changing a route: a test fails while they disagree with the code.',
    '',
    'All bodies are JSON. Authenticated routes take `Authorization: Bearer <jwt>`. Every success is status 200 unless noted;',
    'every error is an RFC 9457 `application/problem+json` object `{type, title, status, detail, code, request_id}` (see the codes below).',
    ''
  ]
  const byTag = new Map<string, string[]>()
  for (const path of Object.keys(doc.paths).sort()) {
    for (const method of METHODS) {
      const op = doc.paths[path][method]
      if (!op) continue
      const tag = op.tags?.[0] ?? 'other'
      const body = op.requestBody?.content?.['application/json']?.schema
      const okStatus = Object.keys(op.responses ?? {}).find((s) => s.startsWith('2')) ?? '200'
      const ok = op.responses?.[okStatus]?.content?.['application/json']?.schema
      const errors = Object.keys(op.responses ?? {}).filter((s) => !s.startsWith('2')).join(', ')
      const auth = Array.isArray(op.security) && op.security.length === 0 ? 'public' : 'bearer'
      const row = `| \`${method.toUpperCase()} ${path}\` | ${auth} | ${cell(op.summary ?? '')} | ${cell(shape(body, components))} | ${okStatus} ${cell(shape(ok, components))} | ${errors} |`
      if (!byTag.has(tag)) byTag.set(tag, [])
      byTag.get(tag)!.push(row)
    }
  }
  for (const [tag, rows] of [...byTag].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`## ${tag}`, '', '| route | auth | what | body | success | errors |', '| --- | --- | --- | --- | --- | --- |', ...rows, '')
  }
  lines.push('## Error codes', '', '| status | code | title |', '| --- | --- | --- |')
  for (const [code, { status, title }] of Object.entries(ErrorCodes)) lines.push(`| ${status} | \`${code}\` | ${title} |`)
  lines.push('')
  return lines.join('\n')
}
