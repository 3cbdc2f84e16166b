// Table interfaces of the `billing` schema.
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

export const SCHEMA = 'billing'

export type TransactionKind = 'signup_bonus' | 'recharge' | 'usage' | 'adjustment' | 'payment' | 'redemption'

export interface AccountsTable {
  user_id: number
  balance: number
  /** Bumped with every balance change; orders the Redis copies. */
  version: number
  /** Sum of `estimated_amount` over the usage events applied here (chat's prices); moves with balance in one commit. */
  chat_applied: ColumnType<number, number | undefined, number>
  created_at: ColumnType<Date, never, never>
  updated_at: ColumnType<Date, never, Date>
}

export interface TransactionsTable {
  id: Generated<number>
  user_id: number
  change_amount: number
  balance_after: number
  kind: TransactionKind
  description: string
  source_id: string
  event_id: string | null
  model: string | null
  prompt_tokens: number | null
  completion_tokens: number | null
  input_ratio: number | null
  output_ratio: number | null
  usage_source: 'provider' | 'estimated' | null
  /** Usage rows: what the model call was for (0004); null on other kinds. */
  purpose: ColumnType<'exchange' | 'title' | null, 'exchange' | 'title' | null | undefined, never>
  /** Adjustments: the admin who made it and the reason given (0004). */
  admin_id: ColumnType<number | null, number | null | undefined, never>
  reason: ColumnType<string | null, string | null | undefined, never>
  created_at: ColumnType<Date, never, never>
}

export interface ProcessedEventsTable {
  event_id: string
  /** The canonical (un-namespaced) subject, e.g. chat.usage.recorded. */
  subject: string
  user_id: number
  occurred_at: Date
  /** What a usage event cost (0 means no ledger row); null for other events. */
  amount: number | null
  applied_at: ColumnType<Date, never, never>
}

export interface DeadLettersTable {
  id: Generated<number>
  stream: string
  stream_seq: number | null
  subject: string
  payload: string
  error: string
  created_at: ColumnType<Date, never, never>
}

export interface IdempotencyKeysTable {
  user_id: number
  key: string
  request_hash: string
  response_status: number | null
  response_body: unknown
  created_at: ColumnType<Date, never, never>
}

export type OrderStatus = 'pending' | 'paid' | 'closed'
export type OrderChannel = 'jsapi' | 'native'

/** A paid top-up sent to WeChat Pay (DESIGN §6.2); `order_no` is its out_trade_no. */
export interface OrdersTable {
  id: Generated<number>
  order_no: string
  user_id: number
  package_id: string
  channel: OrderChannel
  amount_fen: number
  tokens: number
  status: ColumnType<OrderStatus, OrderStatus | undefined, OrderStatus>
  mchid: string
  appid: string
  simulated: ColumnType<boolean, boolean | undefined, boolean>
  prepay_id: string | null
  code_url: string | null
  transaction_id: string | null
  flagged: ColumnType<boolean, boolean | undefined, boolean>
  flag_reason: string | null
  checked_at: Date | null
  notified_at: Date | null
  created_at: ColumnType<Date, Date | undefined, never>
  expires_at: Date
  paid_at: Date | null
  closed_at: Date | null
}

/** A batch of redemption codes an admin made (DESIGN §6.2). */
export interface RedemptionBatchesTable {
  id: Generated<number>
  admin_id: number
  tokens: number
  count: number
  expires_at: Date | null
  note: string | null
  created_at: ColumnType<Date, never, never>
}

/** One code of a batch: its sha-256 only; used once (used_by and used_at set together). */
export interface RedemptionCodesTable {
  id: Generated<number>
  batch_id: number
  code_hash: Buffer
  used_by: number | null
  used_at: Date | null
}

export interface Database {
  accounts: AccountsTable
  transactions: TransactionsTable
  processed_events: ProcessedEventsTable
  dead_letters: DeadLettersTable
  idempotency_keys: IdempotencyKeysTable
  redemption_batches: RedemptionBatchesTable
  redemption_codes: RedemptionCodesTable
  orders: OrdersTable
}

export type Account = Selectable<AccountsTable>
export type LedgerRow = Selectable<TransactionsTable>
export type NewLedgerRow = Insertable<TransactionsTable>
export type DeadLetter = Selectable<DeadLettersTable>
export type Order = Selectable<OrdersTable>
