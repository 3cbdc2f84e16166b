// auth.user.registered: written with the new user, relayed to the namespaced AUTH_EVENTS stream with Nats-Msg-Id = event_id.
import t from 'tap'
import Value from 'typebox/value'
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream'
import { namespaced, UserRegisteredSchema } from '@chat-platform/contracts'
import { waitFor } from '@chat-platform/platform/testing'
import { buildTestApp } from '../helper.ts'
import { startFakeWechat, FAKE_APPID, FAKE_SECRET } from '../fake-wechat.ts'
import { decodeJwt } from '../jwt.ts'

t.test('email and WeChat registrations reach JetStream once each, valid against the contract', async (t) => {
  const wx = await startFakeWechat(t)
  const s = await buildTestApp(t, { WECHAT_APPID: FAKE_APPID, WECHAT_SECRET: FAKE_SECRET, WECHAT_API_BASE: wx.url })
  const names = namespaced(s.config.EVENTS_NAMESPACE)
  const stream = names.streams.AUTH_EVENTS.name

  const byEmail = await s.register()
  const wxLogin = await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: wx.code({ openid: 'oStream' }) } })
  const wechatUserId = Number(decodeJwt(wxLogin.json().access_token).payload.sub)
  // Neither a duplicate registration nor a returning WeChat user produces an event.
  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: byEmail.email, password: 'password-xyz', nickname: 'dup' } })).statusCode, 409)
  t.equal((await s.app.inject({ method: 'POST', url: '/api/auth/wechat-login', payload: { code: wx.code({ openid: 'oStream' }) } })).statusCode, 200)

  await waitFor(async () => {
    const rows = await s.deps.db.selectFrom('outbox').select(['published_at', 'stream_seq']).execute()
    return rows.length === 2 && rows.every((r) => r.published_at && r.stream_seq)
  }, { what: 'outbox rows published' })

  const jsm = await jetstreamManager(s.deps.nc)
  t.equal((await jsm.streams.info(stream)).state.messages, 2)
  const consumer = await jetstream(s.deps.nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All })
  const got: { subject: string, msgId?: string, data: Record<string, unknown> }[] = []
  for (let i = 0; i < 2; i++) {
    const m = await consumer.next({ expires: 5_000 })
    if (!m) break
    got.push({ subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id'), data: m.json() })
  }
  t.equal(got.length, 2)
  for (const g of got) {
    t.equal(g.subject, names.subject('auth.user.registered'))
    t.ok(Value.Check(UserRegisteredSchema, g.data), `payload matches the contract: ${JSON.stringify(g.data)}`)
    t.equal(g.msgId, g.data.event_id, 'Nats-Msg-Id is the event_id')
  }
  t.same(got.map((g) => [g.data.user_id, g.data.via]).sort(), [[byEmail.user_id, 'email'], [wechatUserId, 'wechat']].sort())

  const rows = await s.deps.db.selectFrom('outbox').select(['id', 'request_id']).execute()
  t.same(new Set(rows.map((r) => r.id)), new Set(got.map((g) => g.data.event_id)), 'stream events are the outbox rows')
  t.ok(rows.every((r) => r.request_id), 'the request id travels with the event')
})
