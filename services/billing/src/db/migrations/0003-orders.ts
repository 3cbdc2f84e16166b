// Paid top-ups (DESIGN §6.2): orders sent to WeChat Pay, and the ledger kind `payment` their credit is written as.
import { sql, type Migration } from 'kysely'

export const createOrders: Migration = {
  async up (db) {
    await db.schema.createTable('orders')
      // An integer id for the `before_id` cursor of the lists; order_no is what WeChat Pay and the user know.
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('order_no', 'text', (c) => c.notNull().unique().check(sql`order_no ~ '^[A-Za-z0-9]{6,32}$'`))
      .addColumn('user_id', 'bigint', (c) => c.notNull())
      .addColumn('package_id', 'text', (c) => c.notNull())
      .addColumn('channel', 'text', (c) => c.notNull().check(sql`channel in ('jsapi', 'native')`))
      .addColumn('amount_fen', 'integer', (c) => c.notNull().check(sql`amount_fen > 0`))
      .addColumn('tokens', 'bigint', (c) => c.notNull().check(sql`tokens > 0`))
      .addColumn('status', 'text', (c) => c.notNull().defaultTo('pending').check(sql`status in ('pending', 'paid', 'closed')`))
      // The merchant and app the order was placed under: a callback must name the same.
      .addColumn('mchid', 'text', (c) => c.notNull())
      .addColumn('appid', 'text', (c) => c.notNull())
      .addColumn('simulated', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('prepay_id', 'text')
      .addColumn('code_url', 'text')
      .addColumn('transaction_id', 'text')
      // Set for an operator: a callback that did not match, or a payment that succeeded after the order closed.
      .addColumn('flagged', 'boolean', (c) => c.notNull().defaultTo(false))
      .addColumn('flag_reason', 'text')
      // When WeChat Pay was last asked about the order (GET, poller): at most one query per order every few seconds.
      .addColumn('checked_at', 'timestamptz')
      .addColumn('notified_at', 'timestamptz')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
      .addColumn('paid_at', 'timestamptz')
      .addColumn('closed_at', 'timestamptz')
      .addCheckConstraint('orders_paid_at', sql`(status = 'paid') = (paid_at is not null)`)
      .execute()
    await sql`create index orders_user_id_id on orders (user_id, id desc)`.execute(db)
    // The poller's scan: pending orders only.
    await sql`create index orders_pending on orders (created_at) where status = 'pending'`.execute(db)
    await sql`create index orders_flagged on orders (id desc) where flagged`.execute(db)

    // The ledger gets the kind `payment` (a credit; source_id = the order_no, unique per kind like every source).
    await sql`alter table transactions drop constraint transactions_kind_check`.execute(db)
    await sql`alter table transactions add constraint transactions_kind_check check (kind in ('signup_bonus', 'recharge', 'usage', 'adjustment', 'payment'))`.execute(db)
    await sql`alter table transactions drop constraint transactions_sign`.execute(db)
    await sql`alter table transactions add constraint transactions_sign check ((kind in ('signup_bonus', 'recharge', 'payment') and change_amount > 0) or (kind = 'usage' and change_amount < 0) or kind = 'adjustment')`.execute(db)
  }
}
