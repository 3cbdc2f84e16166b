// Shared by the infra tests: repository paths, the env schemas each process validates at boot, YAML loading.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'

export const ROOT = resolve(import.meta.dirname, '../..')
export const repoPath = (...parts: string[]) => resolve(ROOT, ...parts)
export const readRepo = (...parts: string[]) => readFileSync(repoPath(...parts), 'utf8')

export const APPS = ['auth', 'chat', 'billing', 'gateway'] as const
export type App = typeof APPS[number]

/** The package directory of each process, relative to the repository root. */
export const APP_DIR: Record<App, string> = {
  auth: 'services/auth',
  chat: 'services/chat',
  billing: 'services/billing',
  gateway: 'gateway'
}

export interface EnvSchema {
  /** Every variable the process reads. */
  keys: Set<string>
  /** Variables it refuses to start without (required and no default). */
  required: string[]
  /** Its default PORT. */
  port: number
}

interface ObjectSchema { type: string, properties: Record<string, { default?: unknown }>, required?: string[] }

const isEnvSchema = (v: unknown): v is ObjectSchema =>
  typeof v === 'object' && v !== null && (v as ObjectSchema).type === 'object' &&
  typeof (v as ObjectSchema).properties === 'object' && 'PORT' in (v as ObjectSchema).properties

/** Reads the TypeBox env schema exported by `<app>/src/config.ts`, whatever it is named. */
export async function loadEnvSchema (app: App): Promise<EnvSchema> {
  const mod = await import(pathToFileURL(repoPath(APP_DIR[app], 'src/config.ts')).href) as Record<string, unknown>
  const schemas = Object.values(mod).filter(isEnvSchema)
  if (schemas.length !== 1) throw new Error(`${app}/src/config.ts: expected one exported env schema with PORT, found ${schemas.length}`)
  const schema = schemas[0]
  return {
    keys: new Set(Object.keys(schema.properties)),
    required: (schema.required ?? []).filter((k) => schema.properties[k].default === undefined),
    port: Number(schema.properties.PORT.default)
  }
}

export async function loadEnvSchemas (): Promise<Record<App, EnvSchema>> {
  const entries = await Promise.all(APPS.map(async (app) => [app, await loadEnvSchema(app)] as const))
  return Object.fromEntries(entries) as Record<App, EnvSchema>
}

/** One YAML document, with merge keys (`<<`) resolved as docker compose does. */
export const loadYaml = (...parts: string[]): any => parse(readRepo(...parts), { merge: true })

/** Every document of a multi-document YAML file; throws on a syntax error. */
export function loadYamlDocuments (...parts: string[]): any[] {
  return parseAllDocuments(readRepo(...parts)).map((doc) => {
    if (doc.errors.length) throw doc.errors[0]
    return doc.toJS()
  }).filter((d) => d !== null)
}

/** `docker compose`'s `${NAME}`, `${NAME:-default}`, `${NAME:?message}` references in a text. */
export function interpolatedNames (text: string): Set<string> {
  return new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]))
}

/** KEY=value lines of a dotenv file (comments and blank lines skipped). */
export function dotenvKeys (text: string): Set<string> {
  return new Set(text.split('\n').map((l) => /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(l.trim())?.[1]).filter((k): k is string => Boolean(k)))
}
