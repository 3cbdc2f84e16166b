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

export interface LedgerRules { signupBonus: number, prices: ModelPrices }
export type Entry = Omit<NewLedgerRow, 'balance_after'>
export type Balances = Map<number, { balance: number, version: number }>

/**
 * Posts entries (in order) and opens the accounts of `open` users: a new account starts at 0 and gets the
 * signup bonus as its first row. Returns the new balance and version of every account that changed.
 * Must run inside a transaction.
 */
export async function postEntries (trx: Db, entries: Entry[], rules: LedgerRules, open: number[] = []): Promise<Balances> {
  const users = [...new Set([...open, ...entries.map((e) => e.user_id)])].sort((a, b) => a - b)
  const opened = await insertMissingAccounts(trx, users)
  const rows: Entry[] = []
  if (rules.signupBonus > 0) {
    for (const userId of opened.sort((a, b) => a - b)) {
      rows.push({ user_id: userId, change_amount: rules.signupBonus, kind: 'signup_bonus', description: SIGNUP_DESCRIPTION, source_id: String(userId) })
    }
  }
  rows.push(...entries.filter((e) => e.change_amount !== 0))
  if (rows.length === 0) return new Map()

  const perUser = new Map<number, { delta: number, rows: number }>()
  for (const r of rows) {
    const p = perUser.get(r.user_id) ?? { delta: 0, rows: 0 }
    p.delta += r.change_amount
    p.rows++
    perUser.set(r.user_id, p)
  }
  const changed = [...perUser.keys()].sort((a, b) => a - b)
  if (changed.length > 1) await lockAccounts(trx, changed)
  const balances = await addToBalances(trx, changed.map((u) => ({ user_id: u, ...perUser.get(u)! })))

  // The UPDATE returned the final balance; walk each user's rows from the balance before it.
  const running = new Map(changed.map((u) => [u, balances.get(u)!.balance - perUser.get(u)!.delta]))
  const ledger: NewLedgerRow[] = rows.map((r) => {
    const after = running.get(r.user_id)! + r.change_amount
    running.set(r.user_id, after)
    return { ...r, balance_after: after }
  })
  await insertTransactions(trx, ledger)
  return balances
}

/** The balance of `userId`, opening the account (with the signup bonus) on first access. */
export async function readBalance (db: Db, userId: number, rules: LedgerRules): Promise<{ balance: number, version: number, opened: boolean }> {
  const found = await selectAccount(db, userId)
  if (found) return { balance: found.balance, version: found.version, opened: false }
  return await db.transaction().execute(async (trx) => {
    await postEntries(trx, [], rules, [userId])
    const acc = (await selectAccount(trx, userId))!
    return { balance: acc.balance, version: acc.version, opened: true }
  })
}

export type ApplyOutcome = 'applied' | 'duplicate'
export interface ApplyResult { outcomes: Map<string, ApplyOutcome>, balances: Balances }

/**
 * Applies usage events in the caller's transaction: records each event_id (events seen before are
 * duplicates and change nothing) and debits the price of the new ones, one ledger row each.
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
    usage_source: e.usage_source
  })), rules, fresh.map(({ event }) => event.user_id))
  return { outcomes: outcomesOf(events, claimed), balances }
}

/** Applies registrations: opens each new user's account with the signup bonus (once, whatever came first). */
export async function applyUserRegistered (trx: Db, events: UserRegistered[], rules: LedgerRules): Promise<ApplyResult> {
  const unique = dedupe(events)
  const claimed = await claimEvents(trx, unique.map((e) => ({
    event_id: e.event_id, subject: Subjects.userRegistered, user_id: e.user_id, occurred_at: e.occurred_at, amount: null
  })))
  const fresh = unique.filter((e) => claimed.has(e.event_id))
  const balances = await postEntries(trx, [], rules, fresh.map((e) => e.user_id))
  return { outcomes: outcomesOf(events, claimed), balances }
}

/** Credits a recharge; returns the new balance. */
export async function creditRecharge (trx: Db, userId: number, amount: number, sourceId: string, rules: LedgerRules): Promise<Balances> {
  return await postEntries(trx, [{ user_id: userId, change_amount: amount, kind: 'recharge', description: RECHARGE_DESCRIPTION, source_id: sourceId }], rules)
}

function dedupe<E extends { event_id: string }> (events: E[]): E[] {
  const seen = new Set<string>()
  return events.filter((e) => !seen.has(e.event_id) && seen.add(e.event_id))
}

function outcomesOf (events: { event_id: string }[], claimed: Set<string>): Map<string, ApplyOutcome> {
  return new Map(events.map((e) => [e.event_id, claimed.has(e.event_id) ? 'applied' : 'duplicate']))
}
