// GET /api/admin/users?query=: email/nickname substring (wildcards literal) or id, newest first, bounded, deleted accounts gone; admins only.
import t from 'tap'
import { signTestToken } from '@chat-platform/platform/testing'
import { buildTestApp, bearer } from '../helper.ts'
import { setUserRoleByEmail } from '../../src/db/repositories/users.ts'

const search = (query: string | undefined, token: string, extra = '') =>
  ({ method: 'GET' as const, url: `/api/admin/users?${query === undefined ? '' : `query=${encodeURIComponent(query)}`}${extra}`, headers: bearer(token) })

t.test('search by substring of email or nickname, or by id; LIKE wildcards taken literally; newest first; bounded', async (t) => {
  const h = await buildTestApp(t)
  const ada = await h.register({ email: 'ada.lovelace@example.com', nickname: 'Countess' })
  const alan = await h.register({ email: 'alan@turing.org', nickname: 'all%_in' })
  const grace = await h.register({ email: 'grace@navy.mil', nickname: 'Amazing Grace' })
  await setUserRoleByEmail(h.deps.db, grace.email, 'admin')
  const token = await h.tokenFor(grace.email, grace.password)

  const byEmail = await h.app.inject(search('LOVELACE', token))
  t.equal(byEmail.statusCode, 200)
  t.match(byEmail.json(), [{ id: ada.user_id, email: 'ada.lovelace@example.com', nickname: 'Countess', role: 'user', created_at: /Z$/ }])
  t.equal(byEmail.json().length, 1)
  t.same(Object.keys(byEmail.json()[0]).sort(), ['created_at', 'email', 'id', 'nickname', 'role'], 'no password hash or anything else')
  t.same((await h.app.inject(search('grace', token))).json().map((u: { id: number, role: string }) => [u.id, u.role]), [[grace.user_id, 'admin']], 'email and nickname both match: one row')
  t.same((await h.app.inject(search('a', token))).json().map((u: { id: number }) => u.id), [grace.user_id, alan.user_id, ada.user_id], 'newest first')
  t.same((await h.app.inject(search('a', token, '&limit=2'))).json().map((u: { id: number }) => u.id), [grace.user_id, alan.user_id])
  t.same((await h.app.inject(search('a', token, `&before_id=${alan.user_id}`))).json().map((u: { id: number }) => u.id), [ada.user_id], 'the next page')
  t.same((await h.app.inject(search(String(ada.user_id), token))).json().map((u: { id: number }) => u.id), [ada.user_id], 'an exact id')
  t.same((await h.app.inject(search(undefined, token))).json().length, 3, 'no query: the newest users')

  // % and _ are not wildcards: only the nickname that holds them literally matches.
  t.same((await h.app.inject(search('%', token))).json().map((u: { id: number }) => u.id), [alan.user_id])
  t.same((await h.app.inject(search('l%_', token))).json().map((u: { id: number }) => u.id), [alan.user_id])
  t.same((await h.app.inject(search('_', token))).json().map((u: { id: number }) => u.id), [alan.user_id])
  t.same((await h.app.inject(search('a%e', token))).json(), [])
  t.same((await h.app.inject(search('\\', token))).json(), [])

  for (const extra of ['&limit=101', '&limit=0', '&before_id=x']) t.equal((await h.app.inject(search('a', token, extra))).statusCode, 400, extra)
  t.equal((await h.app.inject(search('x'.repeat(101), token))).statusCode, 400, 'a query over 100 characters')
})

t.test('a deleted account is not listed', async (t) => {
  const h = await buildTestApp(t)
  const gone = await h.register({ email: 'gone@example.com', nickname: 'Gone' })
  const userToken = await h.tokenFor(gone.email, gone.password)
  const del = await h.app.inject({ method: 'DELETE', url: '/api/user/account', headers: bearer(userToken), payload: { password: gone.password } })
  t.equal(del.statusCode, 200, del.body)
  const admin = signTestToken(999, { role: 'admin' })
  t.same((await h.app.inject(search('gone', admin))).json(), [])
  t.same((await h.app.inject(search(String(gone.user_id), admin))).json(), [])
})

t.test('a normal token is 403, none is 401', async (t) => {
  const h = await buildTestApp(t)
  const u = await h.register()
  const token = await h.tokenFor(u.email, u.password)
  for (const tok of [token, signTestToken(u.user_id, { role: 'user' }), signTestToken(u.user_id, { role: 'Admin' })]) {
    const res = await h.app.inject(search(u.email, tok))
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'forbidden')
  }
  t.equal((await h.app.inject({ method: 'GET', url: '/api/admin/users' })).statusCode, 401)
})
