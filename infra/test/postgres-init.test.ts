// infra/postgres/init.sql run by psql against the real Postgres: one least-privilege role per service, and each
// service's own migrations (and its boot-time database check) working under that role.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { createDb, createPool, ensureDatabase, migrateToLatest, sql } from '../../packages/platform/src/index.ts'
import { TEST_PG_URL, dbUrl } from '../../packages/platform/src/testing/index.ts'
import { repoPath } from './helpers.ts'

const SERVICES = ['auth', 'chat', 'billing'] as const
type Service = typeof SERVICES[number]

const psqlVersion = spawnSync('psql', ['--version'], { encoding: 'utf8' })
if (psqlVersion.error) {
  t.skip('psql is not installed here', () => {})
} else {
  const suffix = randomBytes(4).toString('hex')
  const database = `infra_init_${suffix}`
  const role = (s: Service) => `infra_${suffix}_${s}`
  const password = (s: Service) => `pw-${s}-${suffix}`
  const urlAs = (s: Service) => {
    const u = new URL(dbUrl(database))
    u.username = role(s)
    u.password = password(s)
    return u.toString()
  }

  const admin = createPool({ url: TEST_PG_URL, schema: 'public', poolMax: 1 })
  t.teardown(async () => {
    await admin.query(`drop database if exists "${database}" with (force)`)
    for (const s of SERVICES) await admin.query(`drop role if exists "${role(s)}"`)
    await admin.end()
  })

  const runInit = (env: Record<string, string>, roles: Record<Service, string>, db = database) => spawnSync('psql', [
    '-X', '-q', '-d', TEST_PG_URL,
    '-v', `app_db=${db}`,
    ...SERVICES.flatMap((s) => ['-v', `${s}_role=${roles[s]}`]),
    '-f', repoPath('infra/postgres/init.sql')
  ], { encoding: 'utf8', env: { ...process.env, ...env } })

  /** Runs `query` as the service's role; resolves to the Postgres error code, or 'ok'. */
  async function attempt (s: Service, query: string): Promise<string> {
    const pool = createPool({ url: urlAs(s), schema: s, poolMax: 1 })
    try {
      await pool.query(query)
      return 'ok'
    } catch (err) {
      return (err as { code?: string }).code ?? String(err)
    } finally {
      await pool.end()
    }
  }

  t.test('init.sql creates the database, the roles and their schemas', async (t) => {
    const res = runInit(Object.fromEntries(SERVICES.map((s) => [`${s.toUpperCase()}_DB_PASSWORD`, password(s)])), { auth: role('auth'), chat: role('chat'), billing: role('billing') })
    t.equal(res.status, 0, res.stderr)
    const inDb = createPool({ url: dbUrl(database), schema: 'public', poolMax: 1 })
    try {
      const { rows } = await inDb.query(
        `select n.nspname as schema, r.rolname as owner from pg_namespace n join pg_roles r on r.oid = n.nspowner
         where n.nspname = any($1) order by n.nspname`, [SERVICES])
      t.same(rows, SERVICES.map((s) => ({ schema: s, owner: role(s) })).sort((a, b) => a.schema.localeCompare(b.schema)), 'each schema is owned by its service role')
    } finally { await inDb.end() }
    const roles = await admin.query('select rolname, rolsuper, rolcreatedb, rolcreaterole, rolinherit from pg_roles where rolname = any($1) order by rolname', [SERVICES.map(role)])
    t.equal(roles.rows.length, 3)
    for (const r of roles.rows) t.same({ super: r.rolsuper, createdb: r.rolcreatedb, createrole: r.rolcreaterole, inherit: r.rolinherit }, { super: false, createdb: false, createrole: false, inherit: false }, `${r.rolname} has no special powers`)
  })

  t.test('each service boots under its role: database check and its own migrations', async (t) => {
    for (const s of SERVICES) {
      const url = urlAs(s)
      await t.resolves(ensureDatabase(url), `${s}: the boot-time database check passes without CREATEDB`)
      const { SCHEMA } = await import(pathToFileURL(repoPath(`services/${s}/src/db/database.ts`)).href) as { SCHEMA: string }
      const { migrations } = await import(pathToFileURL(repoPath(`services/${s}/src/db/migrations/index.ts`)).href) as { migrations: Parameters<typeof migrateToLatest>[2] }
      t.equal(SCHEMA, s, `${s} owns the schema init.sql made for it`)
      const db = createDb<any>({ url, schema: SCHEMA, poolMax: 2 })
      try {
        await t.resolves(migrateToLatest(db, SCHEMA, migrations), `${s}: migrations apply as ${role(s)}`)
        await t.resolves(migrateToLatest(db, SCHEMA, migrations), `${s}: and a second boot finds nothing to do`)
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_tables where schemaname = ${SCHEMA}`.execute(db)
        t.ok(rows[0].n >= 1, `${s}: its tables exist`)
      } finally {
        await db.destroy()
      }
    }
  })

  t.test("no role can touch another service's schema, or anything else", async (t) => {
    for (const s of SERVICES) {
      for (const other of SERVICES.filter((o) => o !== s)) {
        t.equal(await attempt(s, `select count(*) from ${other}.kysely_migration`), '42501', `${s} cannot read ${other}'s tables`)
        t.equal(await attempt(s, `create table ${other}.intruder (id int)`), '42501', `${s} cannot create in ${other}`)
      }
      t.equal(await attempt(s, 'create schema intruder'), '42501', `${s} cannot create schemas`)
      t.equal(await attempt(s, 'create table public.intruder (id int)'), '42501', `${s} cannot use public`)
      t.equal(await attempt(s, 'create temporary table intruder (id int)'), '42501', `${s} cannot create temporary tables`)
      t.equal(await attempt(s, 'create table scratch (id int)'), 'ok', `${s} creates tables in its own schema (search_path)`)
    }
    const outsider = `infra_${suffix}_outsider`
    await admin.query(`create role "${outsider}" login`)
    t.teardown(() => admin.query(`drop role if exists "${outsider}"`))
    const u = new URL(dbUrl(database))
    u.username = outsider
    const pool = createPool({ url: u.toString(), schema: 'public', poolMax: 1 })
    await t.rejects(pool.query('select 1'), { code: '42501' }, 'a role init.sql did not name cannot even connect')
    await pool.end()
  })

  t.test('a missing password stops init.sql before it creates anything', async (t) => {
    const other = `infra_${suffix}_x`
    const roles = { auth: `${other}_auth`, chat: `${other}_chat`, billing: `${other}_billing` }
    const res = runInit({ AUTH_DB_PASSWORD: 'a', CHAT_DB_PASSWORD: 'b', BILLING_DB_PASSWORD: '' }, roles, `${database}_x`)
    t.not(res.status, 0, 'psql fails')
    t.match(res.stderr, /BILLING_DB_PASSWORD is not set/)
    const { rows } = await admin.query('select rolname from pg_roles where rolname = any($1)', [Object.values(roles)])
    t.same(rows, [], 'no role was created')
    const dbs = await admin.query('select 1 from pg_database where datname = $1', [`${database}_x`])
    t.equal(dbs.rowCount, 0, 'no database was created')
  })
}
