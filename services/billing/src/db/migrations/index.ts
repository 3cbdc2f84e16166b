// Migrations of the `billing` schema, in order. Frozen in time: never edit one that has shipped, add a new one.
import type { Migration } from 'kysely'
import { createLedger } from './0001-ledger.ts'
import { addChatApplied } from './0002-chat-applied.ts'
import { createOrders } from './0003-orders.ts'
import { createRedemptionCodes } from './0004-redemption-codes.ts'

export const migrations: Record<string, Migration> = {
  '0001_ledger': createLedger,
  '0002_chat_applied': addChatApplied,
  '0003_orders': createOrders,
  '0004_redemption_codes': createRedemptionCodes
}
