// `pnpm ops admin:grant <email>` / `admin:revoke <email>`: the only way the stored admin role changes.
import { normalizeEmail } from '../config.ts'
import { findUserByEmail, setUserRoleByEmail } from '../db/repositories/users.ts'
import type { AuthOpsContext } from './context.ts'

/**
 * Sets the role of the user registered with `email` (trimmed and lower-cased as registration stores it).
 * Exit 0 when the user now holds the wanted role (also when it already did), 1 when nobody registered the
 * address. Only tokens issued afterwards see the change: a revoked admin's token keeps the role until it
 * expires (at most auth's ADMIN_JWT_TTL).
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
    await setUserRoleByEmail(db, email, role)
    ctx.out(action === 'grant'
      ? `granted admin to user ${user.id} (${email}): tokens issued from the next login on carry role "admin"`
      : `revoked admin from user ${user.id} (${email}): tokens issued from now on carry no role; ones already issued expire within ADMIN_JWT_TTL`)
    return 0
  } catch (err) {
    // 42703 undefined_column, 42P01 undefined_table: auth has not migrated this database (it does so at boot).
    const code = (err as { code?: string }).code
    if (code === '42703' || code === '42P01') throw new Error(`auth's schema is not migrated to a version with stored roles (${(err as Error).message}); start the current auth service once, then retry`)
    throw err
  }
}
