// Accounts open only for users auth knows: a validly signed token for a user id that does not exist
// (a deleted user, or a token minted with a leaked key) gets no signup bonus, no balance and no model;
// a usage event for such a user is set aside instead of opening an account.
import { authInternal } from '@chat-platform/platform'
import type { Kysely } from 'kysely'
import type { Database } from './db/database.ts'
import { selectAccountIds } from './db/repositories/accounts.ts'

export type UserCheck = (userId: number, requestId?: string) => Promise<boolean>

export interface KnownUsers {
  /** Whether `userId` is a real user; throws (503 service_unavailable) when auth must be asked and cannot answer. */
  has: UserCheck
  /** The users of `userIds` that are real, and those auth could not be asked about (unreachable: retry later). */
  sort: (userIds: number[]) => Promise<{ known: Set<number>, unknown: Set<number>, unanswered: Map<number, Error> }>
}

const CACHE_MAX = 100_000

/**
 * An existing account is proof enough (it was opened for a known user or by an event from auth or chat);
 * otherwise auth is asked once. `enabled: false` trusts every id (unit tests of billing alone).
 */
export function knownUsers (db: Kysely<Database>, opts: { authUrl: string, enabled: boolean }): KnownUsers {
  const known = new Set<number>()
  const remember = (userId: number) => {
    if (known.size > CACHE_MAX) known.clear()
    known.add(userId)
  }
  const auth = authInternal(opts.authUrl, { service: 'auth' })
  const askAuth = async (userId: number, requestId?: string) => (await auth.user(userId, { requestId })) !== null

  return {
    async has (userId, requestId) {
      if (!opts.enabled || known.has(userId)) return true
      const found = (await selectAccountIds(db, [userId])).has(userId) || await askAuth(userId, requestId)
      if (found) remember(userId)
      return found
    },
    async sort (userIds) {
      const ids = [...new Set(userIds)]
      const result = { known: new Set<number>(), unknown: new Set<number>(), unanswered: new Map<number, Error>() }
      const open = opts.enabled ? ids.filter((id) => !known.has(id)) : []
      if (open.length === 0) return { ...result, known: new Set(ids) }
      for (const id of ids) if (known.has(id)) result.known.add(id)
      const withAccount = await selectAccountIds(db, open)
      await Promise.all(open.map(async (id) => {
        try {
          if (withAccount.has(id) || await askAuth(id)) {
            remember(id)
            result.known.add(id)
          } else {
            result.unknown.add(id)
          }
        } catch (err) {
          result.unanswered.set(id, err as Error)
        }
      }))
      return result
    }
  }
}
