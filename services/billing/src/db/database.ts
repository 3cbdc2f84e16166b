// Table interfaces of the `billing` schema.
import type { OutboxTable } from '@chat-platform/platform'

export const SCHEMA = 'billing'

export interface Database {
  outbox: OutboxTable
}
