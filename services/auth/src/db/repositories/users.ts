// Queries on `users`.
import { sql, type Kysely } from 'kysely'
import type { Database, NewUser, User, UserRole } from '../database.ts'

type Db = Kysely<Database>

export async function findUserById (db: Db, id: number): Promise<User | undefined> {
  return await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findUserByEmail (db: Db, email: string): Promise<User | undefined> {
  return await db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst()
}

/** Inserts a user; with an email already taken nothing is inserted and undefined is returned. */
export async function insertUser (db: Db, user: NewUser): Promise<User | undefined> {
  return await db.insertInto('users').values(user)
    .onConflict((oc) => oc.column('email').doNothing())
    .returningAll()
    .executeTakeFirst()
}

/** Updates only the profile fields given; returns the row (undefined if the user is gone). */
export async function updateUserProfile (db: Db, id: number, fields: { nickname?: string, avatar_url?: string | null }): Promise<User | undefined> {
  return await db.updateTable('users')
    .set({ ...fields, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst()
}

export async function setUserPasswordHash (db: Db, id: number, passwordHash: string): Promise<void> {
  await db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', id).execute()
}

/** Sets the role of the user with this (normalized) email; undefined when nobody registered it. */
export async function setUserRoleByEmail (db: Db, email: string, role: UserRole): Promise<Pick<User, 'id' | 'email' | 'role'> | undefined> {
  return await db.updateTable('users')
    .set({ role })
    .where('email', '=', email)
    .returning(['id', 'email', 'role'])
    .executeTakeFirst()
}

/** `%`, `_` and `\\` taken literally in a LIKE pattern (escape character: backslash). */
export const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => '\\' + c)

/**
 * Users whose email or nickname contains `query` (case-insensitive, wildcards literal) or whose id it is, newest
 * first, at most `limit`; an empty query lists the newest users. A substring match scans users (no trigram index):
 * bounded by `limit`, and an admin's occasional search.
 */
export async function searchUsers (db: Db, opts: { query: string, limit: number, beforeId?: number }) {
  const id = /^[1-9][0-9]{0,15}$/.test(opts.query) && Number.isSafeInteger(Number(opts.query)) ? Number(opts.query) : undefined
  const pattern = `%${escapeLike(opts.query)}%`
  return await db.selectFrom('users').select(['id', 'email', 'nickname', 'role', 'created_at'])
    .$if(opts.query !== '', (q) => q.where((eb) => eb.or([
      sql<boolean>`email ilike ${pattern}`,
      sql<boolean>`nickname ilike ${pattern}`,
      ...(id === undefined ? [] : [eb('id', '=', id)])
    ])))
    .$if(opts.beforeId !== undefined, (q) => q.where('id', '<', opts.beforeId!))
    .orderBy('id', 'desc')
    .limit(opts.limit)
    .execute()
}
