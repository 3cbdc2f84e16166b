// Table interfaces of the `chat` schema.
import type { OutboxTable } from '@chat-platform/platform'

export const SCHEMA = 'chat'

export interface Database {
  outbox: OutboxTable
}
