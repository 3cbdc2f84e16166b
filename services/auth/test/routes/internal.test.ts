// GET /internal/users/:user_id: billing's question "does this user exist" before it opens an account.
import t from 'tap'
import { buildTestApp } from '../helper.ts'

t.test('answers 200 with the id for a registered user and 404 otherwise', async (t) => {
  const s = await buildTestApp(t)
  const u = await s.register()
  const found = await s.app.inject({ method: 'GET', url: `/internal/users/${u.user_id}` })
  t.equal(found.statusCode, 200)
  t.same(found.json(), { id: u.user_id })
  const missing = await s.app.inject({ method: 'GET', url: `/internal/users/${u.user_id + 1000}` })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'not_found')
  t.equal((await s.app.inject({ method: 'GET', url: '/internal/users/abc' })).statusCode, 400)
})
