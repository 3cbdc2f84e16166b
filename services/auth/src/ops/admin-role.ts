// `pnpm ops admin:grant <email>` / `admin:revoke <email>`: the only way the stored admin role changes.
import { normalizeEmail } from '../config.ts'
import { findUserByEmail, setUserRoleByEmail } from '../db/repositories/users.ts'
import { endAllSessions } from '../sessions.ts'
import type { AuthOpsContext } from './context.ts'

/**
 * Sets the role of the user registered with `email` (trimmed and lower-cased as registration stores it).
 * Exit 0 when the user now holds the wanted role (also when it already did), 1 when nobody registered the
 * address. A grant shows from the next login on. A revoke also ends every session of the user (DESIGN §6.3):
 * the revocations go through auth's outbox like a logout-all, so an admin token stops working everywhere
 * within a second once auth's relay publishes them, and the next login carries no role.
 */
export async function adminRole (ctx: AuthOpsContext, rawEmail: string, action: 'grant' | 'revoke'): Promise<number> {
  const email = normalizeEmail(rawEmail)
  const role = action === 'grant' ? 'admin' : 'user'
  const db = ctx.db()
  try {
    const user = await findUserByEmail(db, email)
    if (!user) {
      ctx.out(`no user is registered with email ${JSON.stringify(email)}: nothing changed (the person registers first, then you grant)`)
      return 1
    }
    if (user.role === role) {
      ctx.out(`user ${user.id} (${email}) ${role === 'admin' ? 'is already an admin' : 'is not an admin'}: nothing changed`)
      return 0
    }
    if (action === 'grant') {
      await setUserRoleByEmail(db, email, role)
      ctx.out(`granted admin to user ${user.id} (${email}): tokens issued from the next login on carry role "admin"`)
      return 0
    }
    await db.transaction().execute(async (trx) => {
      await setUserRoleByEmail(trx, email, role)
      await endAllSessions(trx, { db, eventsNamespace: ctx.eventsNamespace, accessTtlSeconds: ctx.jwtTtl }, user.id, 'admin_revoked')
    })
    ctx.out(`revoked admin from user ${user.id} (${email}): every session of theirs is ended (their tokens stop working once auth publishes the revocations); the next login carries no role`)
    return 0
  } catch (err) {
    // 42703 undefined_column, 42P01 undefined_table: auth has not migrated this database (it does so at boot).
    const code = (err as { code?: string }).code
    if (code === '42703' || code === '42P01') throw new Error(`auth's schema is not migrated to a version with stored roles (${(err as Error).message}); start the current auth service once, then retry`)
    throw err
  }
}
