// Table interfaces of the `chat` schema.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import type { OutboxTable } from '@chat-platform/platform'
import type { UsagePurpose, UsageSource } from '@chat-platform/contracts'

export const SCHEMA = 'chat'

export interface SessionsTable {
  id: Generated<number>
  user_id: number
  title: string
  created_at: Generated<Date>
  /** A model id of CHAT_MODELS; null: the default model. */
  model: string | null
  /** null: CHAT_SYSTEM_PROMPT; '': no system prompt. */
  system_prompt: string | null
}

/**
 * A user message is `pending` while its exchange runs, then `ok` (it got a reply, possibly partial) or
 * `failed` with the error code that ended it; only `ok` user messages are sent back to the model as history.
 * An assistant message is `ok`, or `partial` when the stream was cut or the client left.
 */
export type MessageStatus = 'pending' | 'ok' | 'failed' | 'partial'

export interface MessagesTable {
  id: Generated<number>
  session_id: number
  user_id: number
  role: 'user' | 'assistant'
  content: string
  tokens: Generated<number>
  /** The content's own size by the local tokenizer, counted once at insert for prompt budgeting. */
  content_tokens: number
  status: MessageStatus
  error_code: string | null
  created_at: Generated<Date>
  /** A user message: the id reserved for its reply, which names the exchange (usage rows are unique on it). */
  exchange_reply_id: number | null
  /** A pending user message: its exchange's model and prompt tokens (what the sweeper charges if its process died). */
  exchange_model: string | null
  exchange_prompt_tokens: number | null
  /** A pending user message: renewed by the process running the exchange; expired means nobody is. */
  lease_until: Date | null
  /** An assistant message a regenerate replaced: listed, never sent to the model again. */
  superseded: Generated<boolean>
  /** A user message being asked again (pending): the reply its regeneration replaces; null otherwise. */
  exchange_supersedes: number | null
}

/** One row per charged exchange; kept when its session is deleted (billing history stays). */
export interface UsageTable {
  event_id: string
  user_id: number
  session_id: number
  /** The exchange's reply; null for a title. */
  message_id: number | null
  model: string
  prompt_tokens: number
  completion_tokens: number
  usage_source: UsageSource
  occurred_at: ColumnType<Date, Date | string, never>
  /** Chat's price of the exchange (the event's estimated_amount); null on rows from before it existed. */
  estimated_amount: number | null
  /** The send's Idempotency-Key, kept for good (the key's own record expires): a late retry replays or conflicts. */
  idempotency_key: ColumnType<string | null, string | null | undefined, never>
  /** With idempotency_key: the request it named (idempotency_keys.request_hash). */
  request_hash: ColumnType<string | null, string | null | undefined, never>
  /** The offline simulator answered (the event's `simulated`), so a rebuilt event carries it too. */
  simulated: ColumnType<boolean, boolean | undefined, never>
  /** `exchange`, or `title` (a session's automatic title: no message, at most one per session). */
  purpose: ColumnType<UsagePurpose, UsagePurpose | undefined, never>
}

/** Per user: the sum of estimated_amount over every usage event chat recorded (admission subtracts what billing has not applied). */
export interface UserChargesTable {
  user_id: number
  recorded: number
}

export interface IdempotencyKeysTable {
  user_id: number
  key: string
  request_hash: string
  state: 'in_progress' | 'done'
  response: ColumnType<unknown, string | null, string | null>
  created_at: Generated<Date>
  locked_at: Generated<Date>
}

export interface Database {
  outbox: OutboxTable
  sessions: SessionsTable
  messages: MessagesTable
  usage: UsageTable
  idempotency_keys: IdempotencyKeysTable
  user_charges: UserChargesTable
}

export type SessionRow = Selectable<SessionsTable>
export type MessageRow = Selectable<MessagesTable>
export type NewMessage = Insertable<MessagesTable>
export type MessageUpdate = Updateable<MessagesTable>
export type NewUsage = Insertable<UsageTable>
