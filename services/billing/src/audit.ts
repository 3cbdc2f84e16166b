// The ledger invariants of DESIGN §3, checked against the database; each break is listed with its user.
import { sql, type Kysely } from 'kysely'
import type { Database } from './db/database.ts'

export interface AuditBreak { check: string, user_id: number | null, detail: string }
export interface AuditReport { checks: { name: string, description: string, breaks: number }[], breaks: AuditBreak[] }

interface Check { name: string, description: string, query: ReturnType<typeof sql<{ user_id: number | null, detail: string }>> }

const CHECKS: Check[] = [
  {
    name: 'balance_equals_ledger_sum',
    description: 'every account balance equals the sum of its ledger rows',
    query: sql`
      select coalesce(a.user_id, t.user_id) as user_id,
        'balance ' || coalesce(a.balance::text, '(no account)') || ' but ledger sum ' || coalesce(t.total, 0)::text as detail
      from accounts a
      full join (select user_id, sum(change_amount) as total from transactions group by user_id) t on t.user_id = a.user_id
      where a.user_id is null or a.balance <> coalesce(t.total, 0)`
  },
  {
    name: 'balance_after_chains',
    description: 'per user, ordered by id, balance_after = previous balance_after + change_amount (the first row: its change_amount)',
    query: sql`
      select user_id, 'row ' || id || ': balance_after ' || balance_after || ' but expected ' || (coalesce(prev, 0) + change_amount) as detail
      from (select id, user_id, change_amount, balance_after, lag(balance_after) over (partition by user_id order by id) as prev from transactions) r
      where balance_after <> coalesce(prev, 0) + change_amount`
  },
  {
    name: 'account_balance_is_last_balance_after',
    description: 'the balance of each account equals the balance_after of its newest row',
    query: sql`
      select a.user_id, 'balance ' || a.balance || ' but newest row ' || t.id || ' says ' || t.balance_after as detail
      from accounts a
      join lateral (select id, balance_after from transactions where user_id = a.user_id order by id desc limit 1) t on true
      where t.balance_after <> a.balance`
  },
  {
    name: 'source_applied_once',
    description: 'no (kind, source_id) appears twice: each event, recharge and bonus is applied once',
    query: sql`
      select min(user_id) as user_id, kind || ' ' || source_id || ' appears ' || count(*) || ' times' as detail
      from transactions group by kind, source_id having count(*) > 1`
  },
  {
    name: 'signup_bonus_once',
    description: 'at most one signup bonus per user, keyed by the user id',
    query: sql`
      select user_id, count(*) || ' signup bonus rows' as detail from transactions where kind = 'signup_bonus'
      group by user_id having count(*) > 1 or bool_or(source_id <> user_id::text)`
  },
  {
    name: 'usage_event_charged_once',
    description: 'every applied usage event has exactly one usage row of its price (none when it cost 0)',
    query: sql`
      select p.user_id, 'event ' || p.event_id || ' cost ' || p.amount || ' but has ' || count(t.id) || ' usage rows totalling ' || coalesce(-sum(t.change_amount), 0) as detail
      from processed_events p
      left join transactions t on t.kind = 'usage' and t.source_id = p.event_id::text
      where p.subject = 'chat.usage.recorded'
      group by p.event_id, p.user_id, p.amount
      having count(t.id) <> case when p.amount > 0 then 1 else 0 end or coalesce(-sum(t.change_amount), 0) <> p.amount`
  },
  {
    name: 'usage_row_has_event',
    description: 'every usage row belongs to an applied usage event of the same user',
    query: sql`
      select t.user_id, 'row ' || t.id || ' (source ' || t.source_id || ') has no applied event' as detail
      from transactions t
      left join processed_events p on p.event_id = t.event_id and p.user_id = t.user_id and p.subject = 'chat.usage.recorded'
      where t.kind = 'usage' and (p.event_id is null or t.source_id <> t.event_id::text)`
  },
  {
    name: 'usage_priced_from_provenance',
    description: 'every usage row charges ceil(prompt × input_ratio + completion × output_ratio) from its own provenance',
    query: sql`
      select user_id, 'row ' || id || ' charged ' || -change_amount || ' but its provenance prices it at '
        || coalesce(ceil(prompt_tokens * input_ratio + completion_tokens * output_ratio)::text, '(missing provenance)') as detail
      from transactions
      where kind = 'usage' and (model is null or usage_source is null
        or ceil(prompt_tokens * input_ratio + completion_tokens * output_ratio) is distinct from -change_amount)`
  },
  {
    name: 'paid_order_credited_once',
    description: 'every paid order has exactly one payment row, of its tokens, for its user',
    query: sql`
      select o.user_id, 'order ' || o.order_no || ' (' || o.tokens || ' tokens) has ' || count(t.id) || ' payment rows totalling '
        || coalesce(sum(t.change_amount), 0) || coalesce(' for user ' || string_agg(distinct t.user_id::text, ','), '') as detail
      from orders o
      left join transactions t on t.kind = 'payment' and t.source_id = o.order_no
      where o.status = 'paid'
      group by o.order_no, o.user_id, o.tokens
      having count(t.id) <> 1 or sum(t.change_amount) <> o.tokens or bool_or(t.user_id <> o.user_id)`
  },
  {
    name: 'payment_row_has_paid_order',
    description: 'every payment row belongs to a paid order (its source_id) of the same user',
    query: sql`
      select t.user_id, 'row ' || t.id || ' (source ' || t.source_id || ') has ' ||
        case when o.order_no is null then 'no order' when o.status <> 'paid' then 'an order that is ' || o.status else 'an order of user ' || o.user_id end as detail
      from transactions t
      left join orders o on o.order_no = t.source_id
      where t.kind = 'payment' and (o.order_no is null or o.status <> 'paid' or o.user_id <> t.user_id)`
  },
  {
    name: 'redeemed_code_credited_once',
    description: 'every used redemption code has exactly one redemption row, of its batch\'s tokens, for the user who used it',
    query: sql`
      select c.used_by as user_id, 'code ' || c.id || ' (batch ' || c.batch_id || ', ' || b.tokens || ' tokens) has ' || count(t.id)
        || ' redemption rows totalling ' || coalesce(sum(t.change_amount), 0) as detail
      from redemption_codes c
      join redemption_batches b on b.id = c.batch_id
      left join transactions t on t.kind = 'redemption' and t.source_id = c.id::text
      where c.used_at is not null
      group by c.id, c.batch_id, c.used_by, b.tokens
      having count(t.id) <> 1 or sum(t.change_amount) <> b.tokens or bool_or(t.user_id <> c.used_by)`
  },
  {
    name: 'redemption_row_has_used_code',
    description: 'every redemption row belongs to a code (its source_id) used by the same user',
    query: sql`
      select t.user_id, 'row ' || t.id || ' (source ' || t.source_id || ') has ' ||
        case when c.id is null then 'no code' when c.used_at is null then 'a code not marked used' else 'a code used by user ' || c.used_by end as detail
      from transactions t
      left join redemption_codes c on c.id::text = t.source_id
      where t.kind = 'redemption' and (c.id is null or c.used_at is null or c.used_by <> t.user_id)`
  }
]

/** Runs every check in one snapshot, so that writes going on meanwhile never look like breaks. */
export async function auditLedger (db: Kysely<Database>): Promise<AuditReport> {
  return await db.transaction().setIsolationLevel('repeatable read').execute(async (trx) => {
    const report: AuditReport = { checks: [], breaks: [] }
    for (const c of CHECKS) {
      const { rows } = await c.query.execute(trx)
      report.checks.push({ name: c.name, description: c.description, breaks: rows.length })
      for (const r of rows) report.breaks.push({ check: c.name, user_id: r.user_id === null ? null : Number(r.user_id), detail: r.detail })
    }
    return report
  })
}
