// The pool's prepared statements: parameterized statements are parsed once per connection, a bounded number of them,
// and a migration that changes what a prepared `*` returns does not break the statement for the connection's lifetime.
import t, { type Test } from 'tap'
import { sql, type Kysely, type Migration } from 'kysely'
import { createDb, PREPARED_PER_CONNECTION } from '../src/index.ts'
import { createTestDatabase } from '../src/testing/index.ts'

const SCHEMA = 'preparetest'
const migrations: Record<string, Migration> = {
  '0001_items': { async up (db) { await db.schema.createTable('items').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('name', 'text').execute() } }
}

async function setup (t: Test) {
  const url = await createTestDatabase(t, { [SCHEMA]: migrations })
  // One connection, so every statement below runs on the connection whose prepared statements are inspected.
  const db = createDb<any>({ url, schema: SCHEMA, poolMax: 1 })
  t.teardown(() => db.destroy())
  await sql`insert into items (id, name) values (1, 'one'), (2, 'two')`.execute(db)
  return db
}

const preparedTexts = async (db: Kysely<any>) =>
  (await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(db)).rows.map((r) => r.statement)

t.test('a parameterized statement is prepared once on the connection and reused', async (t) => {
  const db = await setup(t)
  const byId = (id: number) => db.selectFrom('items').select('name').where('id', '=', id).execute()
  t.same(await byId(1), [{ name: 'one' }])
  t.same(await byId(2), [{ name: 'two' }])
  const text = db.selectFrom('items').select('name').where('id', '=', 1).compile().sql
  const prepared = await preparedTexts(db)
  t.equal(prepared.filter((s) => s === text).length, 1, 'the text is prepared exactly once')
  // A statement without parameters (and so DDL, and `begin`/`commit`) is never named.
  await sql`select count(*) from items`.execute(db)
  t.notOk((await preparedTexts(db)).some((s) => s.includes('count(*)')))
})

t.test('at most PREPARED_PER_CONNECTION statements are prepared per connection; further texts still run', async (t) => {
  const db = await setup(t)
  for (let i = 0; i < PREPARED_PER_CONNECTION + 20; i++) {
    const { rows } = await sql<{ v: number }>`select ${i}::int + ${sql.lit(i)} as v`.execute(db)
    t.equal(rows[0].v, 2 * i)
  }
  const prepared = await preparedTexts(db)
  t.ok(prepared.length <= PREPARED_PER_CONNECTION, `${prepared.length} prepared`)
  t.ok(prepared.length >= PREPARED_PER_CONNECTION - 5, 'the cap, not something lower, bounds it')
})

t.test('a column added under a prepared `select *` (a migration during a rollout): prepared again, and answered', async (t) => {
  const db = await setup(t)
  const all = (id: number) => db.selectFrom('items').selectAll().where('id', '=', id).execute()
  t.same(await all(1), [{ id: 1, name: 'one' }])
  await sql`alter table items add column price integer not null default 7`.execute(db)
  // Postgres refuses the old prepared statement (its result type changed); outside a transaction the call is retried.
  t.same(await all(1), [{ id: 1, name: 'one', price: 7 }])
  t.same(await all(2), [{ id: 2, name: 'two', price: 7 }], 'and the new name keeps working')

  // Inside a transaction the refusal aborts it, as any failed statement does; the next call (outside) is answered.
  await sql`alter table items add column stock integer not null default 3`.execute(db)
  await t.rejects(db.transaction().execute(async (trx) => await trx.selectFrom('items').selectAll().where('id', '=', 1).execute()), { code: '0A000' })
  t.same(await all(1), [{ id: 1, name: 'one', price: 7, stock: 3 }])
  t.same(await db.transaction().execute(async (trx) => await trx.selectFrom('items').selectAll().where('id', '=', 2).execute()), [{ id: 2, name: 'two', price: 7, stock: 3 }])
})

t.test('a statement that fails to parse is not left half-prepared', async (t) => {
  const db = await setup(t)
  await t.rejects(sql`select nosuchcolumn from items where id = ${1}`.execute(db), { code: '42703' })
  await t.rejects(sql`select nosuchcolumn from items where id = ${1}`.execute(db), { code: '42703' }, 'the same error again, not "prepared statement does not exist"')
  t.same((await sql`select name from items where id = ${1}`.execute(db)).rows, [{ name: 'one' }])
})
