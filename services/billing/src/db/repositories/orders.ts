// Queries on orders: insert, read one or a list, lock, move to paid or closed, flag, lease for a WeChat Pay query.
import { sql, type Insertable, type Kysely } from 'kysely'
import type { Database, Order, OrdersTable, OrderStatus } from '../database.ts'

type Db = Kysely<Database>

export async function insertOrder (db: Db, order: Insertable<OrdersTable>): Promise<Order> {
  return await db.insertInto('orders').values(order).returningAll().executeTakeFirstOrThrow()
}

export async function selectOrder (db: Db, orderNo: string): Promise<Order | undefined> {
  return await db.selectFrom('orders').selectAll().where('order_no', '=', orderNo).executeTakeFirst()
}

/** The order, row-locked until the transaction ends (settling, flagging and closing serialise on it). */
export async function lockOrder (db: Db, orderNo: string): Promise<Order | undefined> {
  return await db.selectFrom('orders').selectAll().where('order_no', '=', orderNo).forUpdate().executeTakeFirst()
}

export async function listOrders (db: Db, opts: { userId?: number, status?: OrderStatus, flagged?: boolean, limit: number, beforeId?: number }): Promise<Order[]> {
  return await db.selectFrom('orders').selectAll()
    .$if(opts.userId !== undefined, (q) => q.where('user_id', '=', opts.userId!))
    .$if(opts.status !== undefined, (q) => q.where('status', '=', opts.status!))
    .$if(opts.flagged === true, (q) => q.where('flagged', '=', true))
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
}

/** pending → paid, only from a state other than paid (the guard that makes crediting exactly once). */
export async function markOrderPaid (db: Db, orderNo: string, fields: { transaction_id: string | null, paid_at: Date, flag_reason?: string }): Promise<Order | undefined> {
  return await db.updateTable('orders')
    .set({
      status: 'paid',
      transaction_id: fields.transaction_id,
      paid_at: fields.paid_at,
      ...(fields.flag_reason === undefined ? {} : { flagged: true, flag_reason: appendReason(fields.flag_reason) })
    })
    .where('order_no', '=', orderNo).where('status', '<>', 'paid')
    .returningAll().executeTakeFirst()
}

/** pending → closed (never from paid). */
export async function markOrderClosed (db: Db, orderNo: string): Promise<Order | undefined> {
  return await db.updateTable('orders').set({ status: 'closed', closed_at: sql<Date>`now()` })
    .where('order_no', '=', orderNo).where('status', '=', 'pending')
    .returningAll().executeTakeFirst()
}

/** Removes an order WeChat Pay was never given (its placing failed and no Idempotency-Key can come back for it). */
export async function deleteUnplacedOrder (db: Db, id: number): Promise<void> {
  await db.deleteFrom('orders').where('id', '=', id).where('status', '=', 'pending')
    .where('prepay_id', 'is', null).where('code_url', 'is', null).execute()
}

/** Flags an order for an operator, keeping every reason given. */
export async function flagOrder (db: Db, orderNo: string, reason: string): Promise<void> {
  await db.updateTable('orders').set({ flagged: true, flag_reason: appendReason(reason) }).where('order_no', '=', orderNo).execute()
}

/** flag_reason with `reason` appended, unless it already says so (a callback retried, a query repeated). */
const appendReason = (reason: string) =>
  sql<string>`case when strpos(coalesce(flag_reason, ''), ${reason}::text) > 0 then flag_reason else concat_ws('; ', flag_reason, ${reason}::text) end`

/** The first (and every later) genuine callback for the order: when WeChat Pay last called back about it. */
export async function markOrderNotified (db: Db, orderNo: string): Promise<void> {
  await db.updateTable('orders').set({ notified_at: sql<Date>`now()` }).where('order_no', '=', orderNo).execute()
}

/**
 * Takes the right to ask WeChat Pay about a pending order now: true when it was not asked within `everyMs`
 * (whoever asks — GET, the poller of any replica — moves `checked_at`, so an order is asked at most once per period).
 */
export async function leaseOrderCheck (db: Db, orderNo: string, everyMs: number): Promise<boolean> {
  const row = await db.updateTable('orders').set({ checked_at: sql<Date>`now()` })
    .where('order_no', '=', orderNo).where('status', '=', 'pending')
    .where((eb) => eb.or([eb('checked_at', 'is', null), eb('checked_at', '<', sql<Date>`now() - make_interval(secs => ${everyMs / 1000})`)]))
    .returning('order_no').executeTakeFirst()
  return row !== undefined
}

/**
 * The poller's batch: pending orders older than `afterMs` (or expired) not asked about within `afterMs`, leased to
 * this caller by moving their `checked_at` in one statement. `FOR UPDATE SKIP LOCKED` keeps two replicas from taking
 * the same rows at the same moment; the new `checked_at` keeps them from taking them again until the period passes.
 */
export async function leasePendingOrders (db: Db, afterMs: number, limit: number): Promise<Order[]> {
  const { rows } = await sql<Order>`
    update orders o set checked_at = now()
    from (
      select id from orders
      where status = 'pending'
        and (created_at < now() - make_interval(secs => ${afterMs / 1000}) or expires_at < now())
        and (checked_at is null or checked_at < now() - make_interval(secs => ${afterMs / 1000}))
        -- a flagged order waits for an operator (payments:reconcile), not for the next poll
        and not flagged
      order by created_at
      limit ${limit}
      for update skip locked
    ) due
    where o.id = due.id
    returning o.*`.execute(db)
  return rows.map((r) => ({ ...r, id: Number(r.id), user_id: Number(r.user_id), tokens: Number(r.tokens) }))
}

/** Orders created in a window (for payments:reconcile), oldest first. */
export async function selectOrdersCreated (db: Db, since: Date, until: Date, statuses: OrderStatus[]): Promise<Order[]> {
  return await db.selectFrom('orders').selectAll()
    .where('created_at', '>=', since).where('created_at', '<', until).where('status', 'in', statuses)
    .orderBy('id').execute()
}
