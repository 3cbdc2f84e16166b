// A real Postgres database per test file: migrate once into a template, then CREATE DATABASE … TEMPLATE.
import { createHash, randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Migration } from 'kysely'
import { createDb, migrateToLatest } from '../db.ts'

export const TEST_PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

interface Teardown { teardown: (fn: () => unknown) => void }

export function dbUrl (name: string): string {
  const u = new URL(TEST_PG_URL)
  u.pathname = `/${name}`
  return u.toString()
}

async function withAdmin<T> (fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: TEST_PG_URL })
  await c.connect()
  try { return await fn(c) } finally { await c.end() }
}

function migrationsHash (schemas: Record<string, Record<string, Migration>>): string {
  const h = createHash('sha256')
  for (const [schema, migrations] of Object.entries(schemas).sort()) {
    h.update(schema)
    for (const [name, m] of Object.entries(migrations).sort()) h.update(name).update(String(m.up)).update(String(m.down ?? ''))
  }
  return h.digest('hex').slice(0, 12)
}

/** The template database holding `schemas` migrated, created once per migration set (safe across parallel test processes). */
export async function ensureTemplate (schemas: Record<string, Record<string, Migration>>): Promise<string> {
  const name = `tpl_${Object.keys(schemas).sort().join('_')}_${migrationsHash(schemas)}`
  await withAdmin(async (c) => {
    await c.query('select pg_advisory_lock(hashtext($1))', [name])
    try {
      const { rowCount } = await c.query('select 1 from pg_database where datname = $1 and datistemplate', [name])
      if (rowCount) return
      await c.query(`drop database if exists "${name}"`)
      await c.query(`create database "${name}"`)
      for (const [schema, migrations] of Object.entries(schemas)) {
        const db = createDb<any>({ url: dbUrl(name), schema, poolMax: 1 })
        try { await migrateToLatest(db, schema, migrations) } finally { await db.destroy() }
      }
      await c.query(`alter database "${name}" with is_template true`)
    } finally {
      await c.query('select pg_advisory_unlock(hashtext($1))', [name])
    }
  })
  return name
}

/** A fresh database cloned from the migrated template, dropped when the test ends. Returns its URL. */
export async function createTestDatabase (t: Teardown, schemas: Record<string, Record<string, Migration>>): Promise<string> {
  const template = await ensureTemplate(schemas)
  const name = `test_${randomBytes(6).toString('hex')}`
  await withAdmin(async (c) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await c.query(`create database "${name}" template "${template}"`)
        return
      } catch (err) {
        // 55006: the template is briefly in use by another clone; try again.
        if ((err as { code?: string }).code !== '55006' || attempt > 50) throw err
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100))
      }
    }
  })
  t.teardown(() => withAdmin((c) => c.query(`drop database if exists "${name}" with (force)`)))
  return dbUrl(name)
}
