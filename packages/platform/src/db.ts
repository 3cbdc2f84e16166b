// Postgres through Kysely: one pool per service pinned to its own schema, database creation and migrations.
import pg from 'pg'
import { Kysely, Migrator, PostgresDialect, sql, type Migration, type MigrationProvider } from 'kysely'
import type { Logger } from 'pino'

// int8 (bigint) and numeric come back as strings by default; our amounts stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v))
pg.types.setTypeParser(1700, (v) => Number(v))

export interface DbOptions { url: string, schema: string, poolMax?: number, applicationName?: string }

/** At most this many statements are kept prepared per connection; further distinct texts run unnamed. */
export const PREPARED_PER_CONNECTION = 256
/** Distinct statement texts named in this process; beyond it (SQL built with variable-length lists) texts run unnamed. */
const MAX_NAMED_TEXTS = 2_000
const statementNames = new Map<string, string>()

/** The prepared statement name for a text (the same in every connection), or undefined once MAX_NAMED_TEXTS are named. */
function statementName (text: string): string | undefined {
  let name = statementNames.get(text)
  if (name === undefined && statementNames.size < MAX_NAMED_TEXTS) {
    name = `k${statementNames.size.toString(36)}`
    statementNames.set(text, name)
  }
  return name
}

// pg's own Query (a Submittable): what client.query builds from a text, before it is queued.
const PgQuery = (pg as unknown as { Query: new (text: string, values: unknown[]) => { name?: string, callback?: (err: Error | null, res: pg.QueryResult) => void } }).Query

/** Postgres refuses a prepared statement whose `*` now expands to other columns (a migration added one): SQLSTATE 0A000. */
const isStalePlan = (err: unknown) => (err as { code?: string }).code === '0A000' && /cached plan must not change result type/.test((err as Error).message)

/**
 * A pg client that runs every parameterized statement as a named prepared statement, so Postgres parses and plans
 * it once per connection instead of on every call (planning was half of Postgres's time on the send path: the
 * statements with data-modifying CTEs plan in ~0.5 ms and execute in less). Kysely compiles one text per query
 * shape; texts are named process-wide, at most PREPARED_PER_CONNECTION per connection. When a migration changes
 * what a prepared `*` returns, Postgres refuses that statement: it is prepared again under a new name, and the
 * call is retried when no transaction was open (inside one, the caller sees the error and its transaction is
 * rolled back, as for any failed statement).
 */
export class PreparingClient extends pg.Client {
  private prepared = 0
  private inTransaction = false
  /** Names replaced after a stale plan: text → the name to use now on this connection. */
  private renamed?: Map<string, string>

  // pg's query() has many overloads (callbacks, Submittables); only the promise form Kysely uses is named.
  override query (config: any, values?: any, callback?: any): any {
    if (typeof config !== 'string' || !Array.isArray(values) || values.length === 0 || callback !== undefined) {
      if (typeof config === 'string') this.track(config)
      return super.query(config, values, callback)
    }
    const name = this.nameFor(config)
    if (name === undefined) return super.query(config, values)
    const inTransaction = this.inTransaction
    return this.named(name, config, values).catch((err: unknown) => {
      if (!isStalePlan(err)) throw err
      const renamed = `${name}_${(this.renamed?.size ?? 0) + 1}`
      ;(this.renamed ??= new Map()).set(config, renamed)
      if (inTransaction) throw err
      return this.named(renamed, config, values)
    })
  }

  /** A named statement as a pg Query made from the text (a config object would be copied property by property on every call). */
  private named (name: string, text: string, values: unknown[]): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => {
      const query = new PgQuery(text, values)
      query.name = name
      query.callback = (err: Error | null, res: pg.QueryResult) => { if (err) reject(err); else resolve(res) }
      super.query(query as unknown as pg.Submittable)
    })
  }

  private nameFor (text: string): string | undefined {
    const renamed = this.renamed?.get(text)
    if (renamed) return renamed
    const name = statementName(text)
    if (name === undefined) return undefined
    const parsed = (this as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements
    if (parsed[name] !== undefined) return name
    if (this.prepared >= PREPARED_PER_CONNECTION) return undefined
    this.prepared++
    return name
  }

  private track (text: string): void {
    if (/^\s*(begin|start transaction)\b/i.test(text)) this.inTransaction = true
    else if (/^\s*(commit|end|rollback)\s*;?\s*$/i.test(text)) this.inTransaction = false
  }
}

export function createPool (opts: DbOptions) {
  const pool = new pg.Pool({
    Client: PreparingClient,
    connectionString: opts.url,
    max: opts.poolMax ?? 10,
    options: `-c search_path=${opts.schema},public`,
    application_name: opts.applicationName ?? opts.schema,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000
  })
  // A dropped idle connection must not crash the process; the pool replaces it.
  pool.on('error', () => {})
  // Nor one dropped while checked out between two queries (a transaction awaiting something else): pg-pool
  // removes its idle listener then, and an 'error' event without a listener would be uncaught. The next
  // query on that client fails and the pool discards it.
  pool.on('connect', (client) => { client.on('error', () => {}) })
  return pool
}

export function createDb<DB> (opts: DbOptions): Kysely<DB> {
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: createPool(opts) }) })
}

/** Creates the database named in `url` if it does not exist (several processes may race here). */
export async function ensureDatabase (url: string): Promise<void> {
  const target = new URL(url)
  const name = decodeURIComponent(target.pathname.slice(1))
  if (!name) return
  const admin = new URL(url)
  admin.pathname = '/postgres'
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name])
    if (rowCount) return
    await client.query(`create database "${name.replaceAll('"', '""')}"`)
  } catch (err) {
    // 42P04 duplicate_database, 23505 unique_violation: another replica created it first.
    const code = (err as { code?: string }).code
    if (code !== '42P04' && code !== '23505') throw err
  } finally {
    await client.end()
  }
}

class ObjectMigrationProvider implements MigrationProvider {
  private readonly migrations: Record<string, Migration>
  constructor (migrations: Record<string, Migration>) { this.migrations = migrations }
  async getMigrations () { return this.migrations }
}

/**
 * Creates the schema and applies pending migrations. Kysely holds a Postgres advisory lock while it
 * migrates, and the schema itself is created under our own advisory lock, so replicas can boot together.
 */
export async function migrateToLatest (db: Kysely<any>, schema: string, migrations: Record<string, Migration>, log?: Logger): Promise<void> {
  await db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(hashtext(${'schema:' + schema}))`.execute(conn)
    try {
      // Checked first: `create schema if not exists` needs CREATE on the database even when the schema
      // exists, and a least-privilege role (infra/postgres/init.sql) only owns its pre-created schema.
      const { rows } = await sql`select 1 from pg_namespace where nspname = ${schema}`.execute(conn)
      if (rows.length === 0) await sql`create schema if not exists ${sql.id(schema)}`.execute(conn)
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${'schema:' + schema}))`.execute(conn)
    }
  })
  const migrator = new Migrator({
    db: db.withSchema(schema),
    provider: new ObjectMigrationProvider(migrations),
    migrationTableSchema: schema
  })
  const { error, results } = await migrator.migrateToLatest()
  for (const r of results ?? []) {
    if (r.status === 'Success') log?.info({ migration: r.migrationName, schema }, 'migration applied')
    else if (r.status === 'Error') log?.error({ migration: r.migrationName, schema }, 'migration failed')
  }
  if (error) throw error
}

/** A readiness probe for the pool. */
export async function pingDb (db: Kysely<any>): Promise<void> {
  await sql`select 1`.execute(db)
}

export { sql }
