// Auth's internal routes: GET /internal/users/:user_id (billing's question "does this user exist" before it opens
// an account) and GET /internal/users/:user_id/wechat-openid?appid= (a user's openid in one WeChat app, for WeChat
// Pay), through app.inject and through the typed client billing uses.
import t from 'tap'
import { authInternal } from '@chat-platform/platform'
import { assertInternalContracts } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'

t.test('every internal route is a contract, with the contract\'s schemas (the development mailbox only without MAIL_URL)', async (t) => {
  assertInternalContracts(t, (await buildTestApp(t)).app, 'auth')
  assertInternalContracts(t, (await buildTestApp(t, { MAIL_URL: 'smtp://127.0.0.1:1', MAIL_FROM: 'a@example.com' })).app, 'auth', { absent: ['devMailbox'] })
})

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

t.test('wechat-openid: the openid of the user in the asked app, 404 for another app, another user or none', async (t) => {
  const s = await buildTestApp(t)
  const a = await s.register()
  const b = await s.register()
  // The same person in two apps of one Open Platform account (one unionid), and another user in the first app.
  await s.deps.db.insertInto('wechat_identities').values([
    { appid: 'wxMINI', openid: 'oMiniA', unionid: 'uA', user_id: a.user_id },
    { appid: 'wxSITE', openid: 'oSiteA', unionid: 'uA', user_id: a.user_id },
    { appid: 'wxMINI', openid: 'oMiniB', unionid: null, user_id: b.user_id }
  ]).execute()
  const get = (userId: number | string, qs: string) => s.app.inject({ method: 'GET', url: `/internal/users/${userId}/wechat-openid${qs}` })

  t.same((await get(a.user_id, '?appid=wxMINI')).json(), { openid: 'oMiniA' })
  t.same((await get(a.user_id, '?appid=wxSITE')).json(), { openid: 'oSiteA' })
  t.same((await get(b.user_id, '?appid=wxMINI')).json(), { openid: 'oMiniB' }, "never another user's openid")
  for (const [userId, qs, why] of [[b.user_id, '?appid=wxSITE', 'no identity in that app'], [a.user_id + b.user_id + 1000, '?appid=wxMINI', 'no such user']] as const) {
    const res = await get(userId, qs)
    t.equal(res.statusCode, 404, why)
    t.equal(res.json().code, 'not_found', why)
  }
  for (const [userId, qs] of [[a.user_id, ''], [a.user_id, '?appid='], ['abc', '?appid=wxMINI'], [0, '?appid=wxMINI'], [a.user_id, `?appid=${'x'.repeat(65)}`]] as const) {
    const res = await get(userId, qs)
    t.equal(res.statusCode, 400, `${userId}${qs}`)
    t.equal(res.json().code, 'validation_failed')
  }

  // A deleted account's identities go with it.
  await s.deps.db.deleteFrom('users').where('id', '=', b.user_id).execute()
  t.equal((await get(b.user_id, '?appid=wxMINI')).statusCode, 404, 'deleted user')
})

t.test('the typed client: one call each, null for a 404, the internal token carried', async (t) => {
  const s = await buildTestApp(t, { INTERNAL_TOKEN: 'internal-token-for-tests' })
  const u = await s.register()
  await s.deps.db.insertInto('wechat_identities').values({ appid: 'wxMINI', openid: 'o/with+odd&chars', unionid: null, user_id: u.user_id }).execute()
  const url = await s.app.listen({ host: '127.0.0.1', port: 0 })

  const auth = authInternal(url, { service: 'auth', token: 'internal-token-for-tests' })
  t.same(await auth.user(u.user_id), { id: u.user_id })
  t.equal(await auth.user(u.user_id + 1000), null)
  t.same(await auth.wechatOpenid(u.user_id, 'wxMINI'), { openid: 'o/with+odd&chars' })
  t.equal(await auth.wechatOpenid(u.user_id, 'wx&appid=wxMINI'), null, 'the appid is one query value, encoded')
  t.equal(await auth.wechatOpenid(u.user_id + 1000, 'wxMINI'), null)

  const refused = await authInternal(url, { service: 'auth', token: 'wrong' }).user(u.user_id).then(() => null, (err: unknown) => err)
  t.match(refused, { code: 'service_unavailable', service: 'auth', status: 403, upstreamCode: 'forbidden' }, 'a wrong token: a failure, not null')
})
