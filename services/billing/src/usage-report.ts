// The usage report: a user's (or everyone's) usage ledger rows in [from, to), summed per day in USAGE_TIMEZONE or per model, in one query.
import { sql, type Kysely } from 'kysely'
import type { UsageReportQuery, UsageReportRow } from '@chat-platform/contracts'
import { validationFailed } from '@chat-platform/platform'
import type { Database } from './db/database.ts'

type Db = Kysely<Database>

export const DEFAULT_RANGE_DAYS = 30
export const MAX_RANGE_DAYS = 366
const DAY_MS = 86_400_000
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/

/**
 * The instants `[from, to)` a query asks for: a date is its midnight in `tz` (Postgres resolves it, daylight saving
 * included), a date-time is itself. Defaults: `to` now, `from` DEFAULT_RANGE_DAYS before `to`. 400 when `from` is not
 * before `to` or the range is longer than MAX_RANGE_DAYS.
 */
export async function resolveRange (db: Db, q: Pick<UsageReportQuery, 'from' | 'to'>, tz: string, now = new Date()): Promise<{ from: Date, to: Date }> {
  const resolve = async (v: string | undefined): Promise<Date | undefined> => {
    if (v === undefined) return undefined
    if (!DATE_ONLY.test(v)) return new Date(v)
    const { rows } = await sql<{ t: Date }>`select (${v}::date::timestamp at time zone ${tz}) as t`.execute(db)
    return rows[0].t
  }
  const to = (await resolve(q.to)) ?? now
  const from = (await resolve(q.from)) ?? new Date(to.getTime() - DEFAULT_RANGE_DAYS * DAY_MS)
  if (from.getTime() >= to.getTime()) throw validationFailed('/query/from', 'must be before to')
  // A day in a zone with daylight saving may have 25 hours: the bound allows for it.
  if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY_MS + 3_600_000) throw validationFailed('/query/to', `must be at most ${MAX_RANGE_DAYS} days after from`)
  return { from, to }
}

/**
 * Sums the usage rows of `userId` (every user's when undefined) created in `[from, to)`: exchanges (rows but titles), prompt and
 * completion tokens, and the amount charged, keyed by the day of `created_at` in `tz` or by model, ascending. One
 * aggregate over the partial indexes of usage rows (migration 0004): (user_id, created_at) or (created_at).
 */
export async function usageReport (db: Db, opts: UsageReportOptions): Promise<UsageReportRow[]> {
  return (await usageReportQuery(opts).execute(db)).rows
}

export interface UsageReportOptions { userId?: number, from: Date, to: Date, groupBy: 'day' | 'model', tz: string }

/** The report's one statement (the test EXPLAINs it). */
export function usageReportQuery (opts: UsageReportOptions) {
  const key = opts.groupBy === 'day'
    ? sql<string>`to_char(created_at at time zone ${opts.tz}, 'YYYY-MM-DD')`
    : sql<string>`coalesce(model, '(unknown)')`
  return sql<UsageReportRow>`
    select ${key} as key, (count(*) - count(*) filter (where purpose = 'title'))::int8 as exchanges, coalesce(sum(prompt_tokens), 0)::int8 as prompt_tokens,
      coalesce(sum(completion_tokens), 0)::int8 as completion_tokens, (-sum(change_amount))::int8 as amount
    from transactions
    where kind = 'usage' ${opts.userId === undefined ? sql`` : sql`and user_id = ${opts.userId}`}
      and created_at >= ${opts.from} and created_at < ${opts.to}
    group by 1
    order by 1`
}
