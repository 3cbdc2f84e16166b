// Scale-out: three replicas of each service boot at the same instant against a database that does not exist yet.
import t from 'tap'
import pg from 'pg'
import type { Migration } from 'kysely'
import { signTestToken } from '@chat-platform/platform/testing'
import { migrations as authMigrations } from '@chat-platform/auth/db/migrations/index.ts'
import { migrations as chatMigrations } from '@chat-platform/chat/db/migrations/index.ts'
import { migrations as billingMigrations } from '@chat-platform/billing/db/migrations/index.ts'
import { startSystem, type Proc } from '../support/system.ts'

const SCHEMAS: Record<'auth' | 'chat' | 'billing', Record<string, Migration>> = { auth: authMigrations, chat: chatMigrations, billing: billingMigrations }
const SERVICES = Object.keys(SCHEMAS) as (keyof typeof SCHEMAS)[]
const label = (p: Proc) => `${p.name}#${p.replica ?? 0}`

// info level: each process logs the migrations it applied itself ("migration applied"), which is what we count.
const system = await startSystem(t, { procs: SERVICES, replicas: { auth: 2, chat: 2, billing: 2 }, env: { LOG_LEVEL: 'info' } })

const db = new pg.Client({ connectionString: system.databaseUrl })
await db.connect()
t.teardown(() => db.end())

t.test('all nine processes come up ready on the database they created together', async (t) => {
  for (const name of SERVICES) {
    t.equal(system.instances(name).length, 3, `three ${name} processes`)
    for (const p of system.instances(name)) {
      const res = await fetch(`${p.url}/readyz`)
      t.equal(res.status, 200, `${label(p)} /readyz: ${await res.text()}`)
    }
  }
})

t.test('each schema is migrated exactly once, by exactly one of its replicas', async (t) => {
  for (const name of SERVICES) {
    const expected = Object.keys(SCHEMAS[name]).sort()
    const { rows } = await db.query(`select name from ${name}.kysely_migration order by name`)
    t.same(rows.map((r) => r.name), expected, `${name}.kysely_migration lists every migration once`)
    const lock = await db.query(`select is_locked from ${name}.kysely_migration_lock`)
    t.same(lock.rows, [{ is_locked: 0 }], `${name}: one migration lock row, released`)

    const applied: { migration: string, by: string }[] = []
    for (const p of system.instances(name)) {
      for (const line of p.output.join('').split('\n')) {
        if (!line.includes('migration applied')) continue
        const entry = JSON.parse(line) as { schema: string, migration: string }
        if (entry.schema === name) applied.push({ migration: entry.migration, by: label(p) })
      }
    }
    t.same(applied.map((a) => a.migration).sort(), expected, `${name}: each migration applied once across the three replicas (${applied.map((a) => `${a.migration} by ${a.by}`).join(', ')})`)
  }
})

t.test('every replica serves requests against the migrated schemas', async (t) => {
  for (const [i, p] of system.instances('auth').entries()) {
    const res = await fetch(`${p.url}/api/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `race${i}@example.com`, password: 'correct horse battery', nickname: `race ${i}` })
    })
    t.equal(res.status, 200, `${label(p)} registers a user`)
  }
  const { rows: users } = await db.query('select count(*)::int as n from auth.users')
  t.equal(users[0].n, 3, 'three users in the one auth schema')

  for (const [i, p] of system.instances('chat').entries()) {
    const res = await fetch(`${p.url}/api/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${signTestToken(600_001 + i)}` },
      body: JSON.stringify({ title: `race ${i}` })
    })
    t.equal(res.status, 200, `${label(p)} creates a session`)
  }

  for (const [i, p] of system.instances('billing').entries()) {
    const res = await fetch(`${p.url}/internal/balances/${600_101 + i}`)
    t.equal(res.status, 200, `${label(p)} opens an account`)
  }
  const { rows: accounts } = await db.query('select count(*)::int as n from billing.accounts where user_id between 600101 and 600103')
  t.equal(accounts[0].n, 3, 'three accounts in the one billing schema')
})
