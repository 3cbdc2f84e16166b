// Table interfaces of the `billing` schema.
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

export const SCHEMA = 'billing'

export type TransactionKind = 'signup_bonus' | 'recharge' | 'usage' | 'adjustment'

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

export interface Database {
  accounts: AccountsTable
  transactions: TransactionsTable
  processed_events: ProcessedEventsTable
  dead_letters: DeadLettersTable
  idempotency_keys: IdempotencyKeysTable
}

export type Account = Selectable<AccountsTable>
export type LedgerRow = Selectable<TransactionsTable>
export type NewLedgerRow = Insertable<TransactionsTable>
export type DeadLetter = Selectable<DeadLettersTable>
