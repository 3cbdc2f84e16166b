// Ledger rules: every balance change is a ledger row written with the balance in one transaction;
// accounts open with the signup bonus exactly once; events are applied once by their event_id.
import type { Kysely } from 'kysely'
import { Subjects, type UsageRecorded, type UserRegistered } from '@chat-platform/contracts'
import type { Database, NewLedgerRow } from './db/database.ts'
import { addToBalances, insertMissingAccounts, lockAccounts, selectAccount } from './db/repositories/accounts.ts'
import { insertTransactions } from './db/repositories/transactions.ts'
import { claimEvents } from './db/repositories/processed-events.ts'
import { priceUsage, type ModelPrices } from './pricing.ts'

type Db = Kysely<Database>

export const SIGNUP_DESCRIPTION = '注册赠送'
export const RECHARGE_DESCRIPTION = '充值'

/** `bonusOn` (SIGNUP_BONUS_ON): `register` (default) grants the bonus when an account opens, `verified_email` only on auth.user.registered. */
export interface LedgerRules { signupBonus: number, prices: ModelPrices, bonusOn?: 'register' | 'verified_email' }
export type Entry = Omit<NewLedgerRow, 'balance_after'>
/** What one commit left in each account it changed: what the Redis copy holds (plus its ordering version). */
export type Balances = Map<number, { balance: number, chat_applied: number, version: number }>

/**
 * Posts entries (in order) and opens the accounts of `open` users: a new account starts at 0 and gets the
 * signup bonus as its first row. `applied` adds to accounts' `chat_applied` (chat's price of the usage events
 * this transaction applies), in the same UPDATE as their balances. Returns the new balance, chat_applied and
 * version of every account that changed. Must run inside a transaction.
 */
export async function postEntries (trx: Db, entries: Entry[], rules: LedgerRules, open: number[] = [], applied: Map<number, number> = new Map()): Promise<Balances> {
  const users = [...new Set([...open, ...entries.map((e) => e.user_id), ...applied.keys()])].sort((a, b) => a - b)
  const opened = await insertMissingAccounts(trx, users)
  const rows: Entry[] = []
  if (rules.signupBonus > 0 && rules.bonusOn !== 'verified_email') {
    for (const userId of opened.sort((a, b) => a - b)) rows.push(signupBonusEntry(userId, rules))
  }
  rows.push(...entries.filter((e) => e.change_amount !== 0))

  const perUser = new Map<number, { delta: number, rows: number, applied: number }>()
  for (const r of rows) {
    const p = perUser.get(r.user_id) ?? { delta: 0, rows: 0, applied: 0 }
    p.delta += r.change_amount
    p.rows++
    perUser.set(r.user_id, p)
  }
  for (const [userId, amount] of applied) {
    if (amount <= 0) continue
    const p = perUser.get(userId) ?? { delta: 0, rows: 0, applied: 0 }
    p.applied += amount
    perUser.set(userId, p)
  }
  if (perUser.size === 0) return new Map()
  const changed = [...perUser.keys()].sort((a, b) => a - b)
  if (changed.length > 1) await lockAccounts(trx, changed)
  // The version orders the Redis copies: it moves whenever the copy's content does.
  const balances = await addToBalances(trx, changed.map((u) => { const p = perUser.get(u)!; return { user_id: u, delta: p.delta, rows: Math.max(p.rows, 1), applied: p.applied } }))

  // The UPDATE returned the final balance; walk each user's rows from the balance before it.
  const running = new Map(changed.map((u) => [u, balances.get(u)!.balance - perUser.get(u)!.delta]))
  const ledger: NewLedgerRow[] = rows.map((r) => {
    const after = running.get(r.user_id)! + r.change_amount
    running.set(r.user_id, after)
    return { ...r, balance_after: after }
  })
  if (ledger.length > 0) await insertTransactions(trx, ledger)
  return balances
}

/** The balance of `userId`, opening the account (with the signup bonus) on first access. */
export async function readBalance (db: Db, userId: number, rules: LedgerRules): Promise<{ balance: number, chat_applied: number, version: number, opened: boolean }> {
  const found = await selectAccount(db, userId)
  if (found) return { ...found, opened: false }
  return await db.transaction().execute(async (trx) => {
    await postEntries(trx, [], rules, [userId])
    const acc = (await selectAccount(trx, userId))!
    return { ...acc, opened: true }
  })
}

export type ApplyOutcome = 'applied' | 'duplicate'
export interface ApplyResult { outcomes: Map<string, ApplyOutcome>, balances: Balances }

/**
 * Applies usage events in the caller's transaction: records each event_id (events seen before are
 * duplicates and change nothing) and debits the price of the new ones, one ledger row each; their
 * `estimated_amount` (chat's price) goes into the account's `chat_applied` in the same UPDATE.
 */
export async function applyUsageEvents (trx: Db, events: UsageRecorded[], rules: LedgerRules): Promise<ApplyResult> {
  const unique = dedupe(events)
  const priced = unique.map((e) => ({ event: e, charge: priceUsage(e, rules.prices) }))
  const claimed = await claimEvents(trx, priced.map(({ event: e, charge }) => ({
    event_id: e.event_id, subject: Subjects.usageRecorded, user_id: e.user_id, occurred_at: e.occurred_at, amount: charge.amount
  })))
  const fresh = priced.filter(({ event }) => claimed.has(event.event_id))
  const balances = await postEntries(trx, fresh.map(({ event: e, charge }) => ({
    user_id: e.user_id,
    change_amount: -charge.amount,
    kind: 'usage' as const,
    description: charge.description,
    source_id: e.event_id,
    event_id: e.event_id,
    model: e.model,
    prompt_tokens: e.prompt_tokens,
    completion_tokens: e.completion_tokens,
    input_ratio: charge.input_ratio,
    output_ratio: charge.output_ratio,
    usage_source: e.usage_source,
    purpose: e.purpose ?? 'exchange'
  })), rules, fresh.map(({ event }) => event.user_id), appliedByUser(fresh.map(({ event }) => event)))
  return { outcomes: outcomesOf(events, claimed), balances }
}

const signupBonusEntry = (userId: number, rules: LedgerRules): Entry =>
  ({ user_id: userId, change_amount: rules.signupBonus, kind: 'signup_bonus', description: SIGNUP_DESCRIPTION, source_id: String(userId) })

/**
 * Applies registrations: opens each new user's account with the signup bonus (once, whatever came first). Under
 * `verified_email` the event itself grants the bonus, also to an account already open (at 0), unless the user
 * already has one (its row is keyed by the user id: at most one, ever).
 */
export async function applyUserRegistered (trx: Db, events: UserRegistered[], rules: LedgerRules): Promise<ApplyResult> {
  const unique = dedupe(events)
  const claimed = await claimEvents(trx, unique.map((e) => ({
    event_id: e.event_id, subject: Subjects.userRegistered, user_id: e.user_id, occurred_at: e.occurred_at, amount: null
  })))
  const fresh = unique.filter((e) => claimed.has(e.event_id))
  let entries: Entry[] = []
  if (rules.bonusOn === 'verified_email' && rules.signupBonus > 0 && fresh.length > 0) {
    const users = [...new Set(fresh.map((e) => e.user_id))].sort((a, b) => a - b)
    const granted = new Set((await trx.selectFrom('transactions').select('user_id')
      .where('kind', '=', 'signup_bonus').where('source_id', 'in', users.map(String)).execute()).map((r) => Number(r.user_id)))
    entries = users.filter((u) => !granted.has(u)).map((u) => signupBonusEntry(u, rules))
  }
  const balances = await postEntries(trx, entries, rules, fresh.map((e) => e.user_id))
  return { outcomes: outcomesOf(events, claimed), balances }
}

/** Credits a recharge; returns the new balance. */
export async function creditRecharge (trx: Db, userId: number, amount: number, sourceId: string, rules: LedgerRules): Promise<Balances> {
  return await postEntries(trx, [{ user_id: userId, change_amount: amount, kind: 'recharge', description: RECHARGE_DESCRIPTION, source_id: sourceId }], rules)
}

function appliedByUser (events: UsageRecorded[]): Map<number, number> {
  const out = new Map<number, number>()
  for (const e of events) if (e.estimated_amount) out.set(e.user_id, (out.get(e.user_id) ?? 0) + e.estimated_amount)
  return out
}

function dedupe<E extends { event_id: string }> (events: E[]): E[] {
  const seen = new Set<string>()
  return events.filter((e) => !seen.has(e.event_id) && seen.add(e.event_id))
}

function outcomesOf (events: { event_id: string }[], claimed: Set<string>): Map<string, ApplyOutcome> {
  return new Map(events.map((e) => [e.event_id, claimed.has(e.event_id) ? 'applied' : 'duplicate']))
}
