// Table interfaces of the `auth` schema.
import type { OutboxTable } from '@chat-platform/platform'

export const SCHEMA = 'auth'

export interface Database {
  outbox: OutboxTable
}
