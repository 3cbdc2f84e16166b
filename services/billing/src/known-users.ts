// Accounts open only for users auth knows: a validly signed token for a user id that does not exist
// (a deleted user, or a token minted with a leaked key) gets no signup bonus, no balance and no model.
import { callServiceOrNull } from '@chat-platform/platform'
import type { Kysely } from 'kysely'
import type { Database } from './db/database.ts'
import { selectAccount } from './db/repositories/accounts.ts'

export type UserCheck = (userId: number, requestId?: string) => Promise<boolean>

/**
 * An existing account is proof enough (it was opened for a known user or by an event from auth or chat);
 * otherwise auth is asked once. `enabled: false` trusts every id (unit tests of billing alone).
 */
export function userCheck (db: Kysely<Database>, opts: { authUrl: string, enabled: boolean }): UserCheck {
  const known = new Set<number>()
  return async (userId, requestId) => {
    if (!opts.enabled || known.has(userId)) return true
    if (!(await selectAccount(db, userId))) {
      const user = await callServiceOrNull<{ id: number }>(opts.authUrl, `/internal/users/${userId}`, { requestId })
      if (!user) return false
    }
    if (known.size > 100_000) known.clear()
    known.add(userId)
    return true
  }
}
