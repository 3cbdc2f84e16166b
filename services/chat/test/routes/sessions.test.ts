// /api/sessions: create (title rules), list (order, pagination, ownership), delete (ownership, messages go, usage stays).
import t from 'tap'
import { buildTestApp } from '../helper.ts'

t.test('sessions', async (t) => {
  const s = await buildTestApp(t)
  const { app, auth } = s

  t.test('the public routes are in the OpenAPI document, the internal ones are not', async (t) => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
    t.same(Object.keys(doc.paths).sort(), ['/api/models', '/api/sessions', '/api/sessions/{session_id}', '/api/sessions/{session_id}/messages', '/api/sessions/{session_id}/messages/{message_id}/regenerate'])
    t.ok(doc.paths['/api/sessions/{session_id}/messages'].post.parameters.some((p: { name: string }) => p.name === 'idempotency-key'))
  })

  t.test('every route needs a valid token', async (t) => {
    for (const [method, url] of [['POST', '/api/sessions'], ['GET', '/api/sessions'], ['PATCH', '/api/sessions/1'], ['DELETE', '/api/sessions/1'], ['GET', '/api/models']] as const) {
      const res = await app.inject({ method, url, payload: method === 'POST' || method === 'PATCH' ? {} : undefined })
      t.equal(res.statusCode, 401, `${method} ${url}`)
      t.equal(res.json().code, 'unauthorized')
      t.equal(res.headers['www-authenticate'], 'Bearer')
    }
    const bad = await app.inject({ method: 'GET', url: '/api/sessions', headers: { authorization: 'Bearer a.b.c' } })
    t.equal(bad.statusCode, 401)
  })

  t.test('create: the title is trimmed, defaults to 新会话, and must be 1–100 characters', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(11), payload: { title: '  Trip plans  ', user_id: 999, id: 5 } })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['created_at', 'id', 'model', 'system_prompt', 'title', 'user_id'], 'the seed\'s fields, and the settings (§6.4)')
    t.equal(body.title, 'Trip plans')
    t.equal(body.user_id, 11, 'user_id comes from the token, never the body')
    t.match(body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    t.ok(Number.isInteger(body.id))

    const def = await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(11), payload: {} })
    t.equal(def.json().title, '新会话')
    const noBody = await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(11) })
    t.equal(noBody.statusCode, 200)
    t.equal(noBody.json().title, '新会话')

    t.equal((await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(11), payload: { title: 'x'.repeat(100) } })).statusCode, 200)
    for (const title of ['', '   ', 'x'.repeat(101), 42]) {
      const r = await app.inject({ method: 'POST', url: '/api/sessions', headers: auth(11), payload: { title } })
      t.equal(r.statusCode, 400, `title ${JSON.stringify(title).slice(0, 20)}`)
      t.equal(r.json().code, 'validation_failed')
      t.equal(r.headers['content-type'], 'application/problem+json')
    }
  })

  t.test('list: newest first, only the caller\'s, limit and before_id', async (t) => {
    const ids: number[] = []
    for (let i = 0; i < 5; i++) ids.push((await s.createSession(21, `s${i}`)).id)
    await s.createSession(22, 'someone else')
    const all = await app.inject({ method: 'GET', url: '/api/sessions', headers: auth(21) })
    t.equal(all.statusCode, 200)
    t.same(all.json().map((x: { id: number }) => x.id), [...ids].reverse())
    t.ok(all.json().every((x: { user_id: number }) => x.user_id === 21))

    const page1 = (await app.inject({ method: 'GET', url: '/api/sessions?limit=2', headers: auth(21) })).json()
    t.same(page1.map((x: { id: number }) => x.id), [ids[4], ids[3]])
    const page2 = (await app.inject({ method: 'GET', url: `/api/sessions?limit=2&before_id=${ids[3]}`, headers: auth(21) })).json()
    t.same(page2.map((x: { id: number }) => x.id), [ids[2], ids[1]])

    for (const q of ['limit=0', 'limit=201', 'limit=x', 'before_id=0', 'before_id=abc']) {
      t.equal((await app.inject({ method: 'GET', url: `/api/sessions?${q}`, headers: auth(21) })).statusCode, 400, q)
    }
    t.equal((await app.inject({ method: 'GET', url: '/api/sessions?limit=200', headers: auth(21) })).statusCode, 200)
  })

  t.test('delete: 404 for another user\'s or a missing session; deleting removes messages but keeps usage', async (t) => {
    await s.seedBalance(31, 1000)
    const mine = await s.createSession(31)
    t.equal((await s.send(31, mine.id, 'hello')).statusCode, 200)

    const theirs = await app.inject({ method: 'DELETE', url: `/api/sessions/${mine.id}`, headers: auth(32) })
    t.equal(theirs.statusCode, 404)
    t.equal(theirs.json().code, 'not_found')
    t.equal((await app.inject({ method: 'GET', url: `/api/sessions/${mine.id}/messages`, headers: auth(31) })).statusCode, 200, 'still there')
    const missing = await app.inject({ method: 'DELETE', url: '/api/sessions/987654', headers: auth(31) })
    t.equal(missing.statusCode, 404)
    t.same(missing.json().detail, theirs.json().detail, 'same answer: no existence leak')

    const del = await app.inject({ method: 'DELETE', url: `/api/sessions/${mine.id}`, headers: auth(31) })
    t.equal(del.statusCode, 200)
    t.same(del.json(), { message: '会话删除成功' })
    t.equal((await app.inject({ method: 'GET', url: `/api/sessions/${mine.id}/messages`, headers: auth(31) })).statusCode, 404)
    t.equal((await app.inject({ method: 'DELETE', url: `/api/sessions/${mine.id}`, headers: auth(31) })).statusCode, 404)
    const left = await s.deps.db.selectFrom('messages').select('id').where('session_id', '=', mine.id).execute()
    t.equal(left.length, 0, 'messages deleted')
    const usage = await s.deps.db.selectFrom('usage').selectAll().where('session_id', '=', mine.id).execute()
    t.equal(usage.length, 1, 'usage (billing history) kept')
  })
})
