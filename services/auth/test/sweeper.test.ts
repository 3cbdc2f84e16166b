// The hourly sweep: expired refresh tokens and the sessions left without any, expired codes and old code-mail counts go; live ones stay.
import t from 'tap'
import { sql } from 'kysely'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp } from './helper.ts'
import { sweepExpired } from '../src/sweeper.ts'

t.test('only what can no longer be used is removed', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const live = (await s.login(u.email, u.password)).json()
  await s.login(u.email, u.password)
  const db = s.deps.db
  // The second session's token expired two days ago, and the session started 31 days ago.
  const [, old] = await db.selectFrom('refresh_families').select(['id']).where('user_id', '=', u.user_id).orderBy('created_at').execute()
  await db.updateTable('refresh_tokens').set({ expires_at: sql<Date>`now() - interval '2 days'` }).where('family_id', '=', old.id).execute()
  await db.updateTable('refresh_families').set({ created_at: sql`now() - interval '31 days'` } as never).where('id', '=', old.id).execute()
  await db.insertInto('email_codes').values({ user_id: u.user_id, purpose: 'password_reset', code_hash: Buffer.alloc(32), expires_at: new Date(Date.now() - 2 * 86400_000) }).execute()
  // Registration counted its verification mail (in the background): wait for it, then start from none.
  await waitFor(async () => (await db.selectFrom('email_code_sends').select('id').execute()).length === 1, { what: 'the registration mail counted' })
  await db.deleteFrom('email_code_sends').execute()
  await db.insertInto('email_code_sends').values({ email: u.email }).execute()
  await sql`update email_code_sends set sent_at = now() - interval '2 hours'`.execute(db)
  await db.insertInto('email_code_sends').values({ email: u.email }).execute()

  t.same(await sweepExpired(db), { refreshTokens: 1, sessions: 1, codes: 1, codeSends: 1 })
  t.equal((await db.selectFrom('refresh_families').select('id').where('user_id', '=', u.user_id).execute()).length, 1, 'the live session stays')
  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: live.refresh_token } })).statusCode, 200, 'and works')
  t.equal((await db.selectFrom('email_code_sends').select('id').execute()).length, 1, 'this hour\'s count stays')
  t.same(await sweepExpired(db), { refreshTokens: 0, sessions: 0, codes: 0, codeSends: 0 }, 'nothing more the second time')
})
