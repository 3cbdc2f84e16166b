// Hourly cleanup of what can no longer be used: expired refresh tokens and the sessions left without any, expired codes, code-mail counts past their hour.
import { sql, type Kysely } from 'kysely'
import type { Logger } from 'pino'
import type { Database } from './db/database.ts'

export interface Swept { refreshTokens: number, sessions: number, codes: number, codeSends: number }

/**
 * A refresh token a day past its expiry is gone (it could only be refused), and a session with no token left
 * (revoked, or unused for 30 days) with it: every access token of such a session expired long ago. Codes a day past
 * their 10 minutes, and code-mail counts older than the hour they limit, go too.
 */
export async function sweepExpired (db: Kysely<Database>): Promise<Swept> {
  const n = (r: { numDeletedRows: bigint }) => Number(r.numDeletedRows)
  const refreshTokens = n(await db.deleteFrom('refresh_tokens').where('expires_at', '<', sql<Date>`now() - interval '1 day'`).executeTakeFirst())
  const sessions = n(await db.deleteFrom('refresh_families')
    .where('created_at', '<', sql<Date>`now() - interval '1 day'`)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select(sql`1`.as('one')).whereRef('refresh_tokens.family_id', '=', 'refresh_families.id'))))
    .executeTakeFirst())
  const codes = n(await db.deleteFrom('email_codes').where('expires_at', '<', sql<Date>`now() - interval '1 day'`).executeTakeFirst())
  const codeSends = n(await db.deleteFrom('email_code_sends').where('sent_at', '<', sql<Date>`now() - interval '1 hour'`).executeTakeFirst())
  return { refreshTokens, sessions, codes, codeSends }
}

/** Runs `sweepExpired` now and every hour (every replica: the deletes are idempotent); returns the stop function. */
export function startSweeper (db: Kysely<Database>, log: Logger, everyMs = 3600_000): () => void {
  const run = () => {
    sweepExpired(db)
      .then((swept) => { if (Object.values(swept).some((v) => v > 0)) log.info({ swept }, 'expired sessions and codes removed') })
      .catch((err) => log.warn({ err: (err as Error).message }, 'sweeping expired sessions and codes failed'))
  }
  run()
  const timer = setInterval(run, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
