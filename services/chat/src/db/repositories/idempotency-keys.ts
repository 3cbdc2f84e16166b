// Idempotency keys of POST …/messages: claimed before the exchange, completed with its answer in the same transaction.
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database, MessageRow } from '../database.ts'
import { toMessage } from './messages.ts'

type Db = Kysely<Database> | Transaction<Database>

export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay', response: unknown }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' }
  | { kind: 'gone' }

/**
 * Claims `key` for this request. A key older than `ttlHours` (or swept) is claimed anew, but a charged exchange
 * keeps its key for good (`usage.idempotency_key`), so a new claim first looks there: the same request replays
 * that exchange's reply (and the key's record is restored), another one is a mismatch; an exchange that charged
 * nothing left no key and runs again. An in-progress claim older than `staleMs` (its holder crashed) is taken
 * over. Takeovers are compare-and-set on `locked_at`.
 */
export async function claimIdempotencyKey (db: Db, input: { user_id: number, key: string, request_hash: string, ttlHours: number, staleMs: number }): Promise<ClaimResult> {
  const claim = await claimKeyRecord(db, input)
  if (claim.kind !== 'claimed') return claim
  const stored = await findKeyedExchange(db, input.user_id, input.key)
  if (!stored) return claim
  if (stored.request_hash !== input.request_hash) {
    await releaseIdempotencyKey(db, input.user_id, input.key)
    return { kind: 'mismatch' }
  }
  if (!stored.reply) {
    // Charged, but its session was deleted since: nothing to replay (the session check answers 404 next time).
    await releaseIdempotencyKey(db, input.user_id, input.key)
    return { kind: 'gone' }
  }
  const response = toMessage(stored.reply)
  await completeIdempotencyKey(db, input.user_id, input.key, response)
  return { kind: 'replay', response }
}

/** The charged exchange a key named (kept for good on its usage row) with its stored reply, if any. */
export async function findKeyedExchange (db: Db, userId: number, key: string): Promise<{ request_hash: string | null, reply?: MessageRow } | undefined> {
  const row = await db.selectFrom('usage as u')
    .leftJoin('messages as m', 'm.id', 'u.message_id')
    .select(['u.request_hash', 'm.id', 'm.session_id', 'm.user_id', 'm.role', 'm.content', 'm.tokens', 'm.content_tokens', 'm.status', 'm.error_code', 'm.created_at', 'm.superseded'])
    .where('u.user_id', '=', userId).where('u.idempotency_key', '=', key)
    .executeTakeFirst()
  if (!row) return undefined
  const { request_hash: hash, ...m } = row
  return { request_hash: hash, reply: m.id === null ? undefined : m as unknown as MessageRow }
}

async function claimKeyRecord (db: Db, input: { user_id: number, key: string, request_hash: string, ttlHours: number, staleMs: number }): Promise<ClaimResult> {
  const inserted = await db.insertInto('idempotency_keys')
    .values({ user_id: input.user_id, key: input.key, request_hash: input.request_hash, state: 'in_progress', response: null })
    .onConflict((oc) => oc.doNothing())
    .returning('key')
    .executeTakeFirst()
  if (inserted) return { kind: 'claimed' }
  const row = await db.selectFrom('idempotency_keys')
    // locked_at as text: a JS Date would drop the microseconds the compare-and-set below needs.
    .select(['request_hash', 'state', 'response', sql<string>`locked_at::text`.as('lock'), sql<boolean>`created_at < now() - make_interval(hours => ${input.ttlHours})`.as('expired'), sql<boolean>`locked_at < now() - make_interval(secs => ${input.staleMs / 1000})`.as('stale')])
    .where('user_id', '=', input.user_id).where('key', '=', input.key)
    .executeTakeFirst()
  if (!row) return await claimKeyRecord(db, input)
  const takeOver = row.expired || (row.state === 'in_progress' && row.stale && row.request_hash === input.request_hash)
  if (takeOver) {
    const res = await db.updateTable('idempotency_keys')
      .set({ request_hash: input.request_hash, state: 'in_progress', response: null, created_at: sql`now()`, locked_at: sql`now()` })
      .where('user_id', '=', input.user_id).where('key', '=', input.key).where(sql<string>`locked_at::text`, '=', row.lock)
      .executeTakeFirst()
    return Number(res.numUpdatedRows) === 1 ? { kind: 'claimed' } : { kind: 'in_progress' }
  }
  if (row.request_hash !== input.request_hash) return { kind: 'mismatch' }
  if (row.state === 'done') return { kind: 'replay', response: row.response }
  return { kind: 'in_progress' }
}

export async function completeIdempotencyKey (db: Db, userId: number, key: string, response: unknown): Promise<void> {
  await db.updateTable('idempotency_keys').set({ state: 'done', response: JSON.stringify(response) })
    .where('user_id', '=', userId).where('key', '=', key).execute()
}

/** Frees a claim whose exchange charged nothing, so the client may retry with the same key. */
export async function releaseIdempotencyKey (db: Db, userId: number, key: string): Promise<void> {
  await db.deleteFrom('idempotency_keys').where('user_id', '=', userId).where('key', '=', key).where('state', '=', 'in_progress').execute()
}

export async function deleteExpiredIdempotencyKeys (db: Db, ttlHours: number): Promise<number> {
  const res = await db.deleteFrom('idempotency_keys').where('created_at', '<', sql<Date>`now() - make_interval(hours => ${ttlHours})`).executeTakeFirst()
  return Number(res.numDeletedRows)
}

/** Keeps a long exchange's claim from looking abandoned. */
export async function touchIdempotencyKey (db: Db, userId: number, key: string): Promise<void> {
  await db.updateTable('idempotency_keys').set({ locked_at: sql`now()` })
    .where('user_id', '=', userId).where('key', '=', key).where('state', '=', 'in_progress').execute()
}
