// internalPath builds a call's path from the contract; assertInternalContracts (what the services' contract tests
// rely on) fails for a copied schema, a route without a contract, another service's endpoint or a missing one.
import t from 'tap'
import { Type } from 'typebox'
import { InternalEndpoints, internalPath } from '@chat-platform/contracts'
import { createHttpApp, internalRouteSchema } from '../src/index.ts'
import { assertInternalContracts } from '../src/testing/index.ts'

/** Runs the assertion against a recorder: the messages of the checks that failed. */
function failures (declare: (app: ReturnType<typeof createHttpApp>) => void, opts?: Parameters<typeof assertInternalContracts>[3]): string[] {
  const app = createHttpApp({ service: 'test', logLevel: 'silent', internalToken: undefined })
  declare(app)
  const failed: string[] = []
  const rec = {
    ok: (v: unknown, m = '') => { if (!v) failed.push(m) },
    equal: (a: unknown, b: unknown, m = '') => { if (a !== b) failed.push(m) },
    same: (a: unknown, b: unknown, m = '') => { if (JSON.stringify(a) !== JSON.stringify(b)) failed.push(m) }
  }
  assertInternalContracts(rec, app, 'auth', opts)
  return failed
}

const { user, wechatOpenid } = InternalEndpoints
const reply = async () => ({}) as never

t.test('the contract\'s own schema objects pass', async (t) => {
  t.same(failures((app) => {
    app.get(user.url, { schema: internalRouteSchema(user) }, reply)
    app.get(wechatOpenid.url, { schema: internalRouteSchema(wechatOpenid) }, reply)
  }, { absent: ['devMailbox'] }), [])
})

t.test('an equal copy, a route without a contract, another service\'s route and a missing endpoint fail', async (t) => {
  const copied = failures((app) => {
    app.get(user.url, { schema: { ...internalRouteSchema(user), params: Type.Object({ user_id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) }) } }, reply)
    app.get(wechatOpenid.url, { schema: internalRouteSchema(wechatOpenid) }, reply)
  }, { absent: ['devMailbox'] })
  t.same(copied, ['user: the route\'s params schema is the contract\'s'])

  t.match(failures((app) => { app.get('/internal/things/:id', reply) }), [
    'GET /internal/things/:id is a contract (contracts\' InternalEndpoints)',
    'auth serves user (GET /internal/users/:user_id)',
    'auth serves wechatOpenid (GET /internal/users/:user_id/wechat-openid)',
    'auth serves devMailbox (GET /internal/dev-mailbox)'
  ])
  t.match(failures((app) => {
    app.get(InternalEndpoints.balance.url, { schema: internalRouteSchema(InternalEndpoints.balance) }, reply)
  }, { absent: ['user', 'wechatOpenid', 'devMailbox'] }), ['balance is served by billing'])
})

t.test('internalPath: params URI-encoded into their segments, undefined query values left out', async (t) => {
  t.equal(internalPath(InternalEndpoints.wechatOpenid, { params: { user_id: 7 }, query: { appid: 'wx a&b=c' } }), '/internal/users/7/wechat-openid?appid=wx+a%26b%3Dc')
  t.equal(internalPath(InternalEndpoints.devMailbox, { query: { to: undefined } }), '/internal/dev-mailbox')
  t.equal(internalPath(InternalEndpoints.usageRepublish, { body: { event_ids: [] } }), '/internal/usage/republish')
  t.throws(() => internalPath(InternalEndpoints.user, { params: {} as never }), /no value for :user_id/)
})
