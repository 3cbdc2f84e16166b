// Usage events for users auth does not know: set aside as dead letters (kept, logged, counted), never an account
// opened with a bonus; known users without an account yet are charged as before; auth unreachable → the event waits.
import t from 'tap'
import { freePort, waitFor } from '@chat-platform/platform/testing'
import { buildTestApp as buildAuth } from '../../../auth/test/helper.ts'
import { testEnv, testDeps, usageEvent, publisher, ledgerOf } from '../helper.ts'
import { auditLedger } from '../../src/audit.ts'

const INTERNAL_TOKEN = 'billing-auth-internal-token'
const STRANGER = 987_654_321

t.test('an unknown user is set aside, a known one without an account is charged after the bonus', async (t) => {
  // The real auth service, its internal route closed without the token billing carries.
  const auth = await buildAuth(t, { INTERNAL_TOKEN })
  const authUrl = await auth.app.listen({ port: 0, host: '127.0.0.1' })
  const user = await auth.register()
  const env = await testEnv(t, { BILLING_CHECK_USERS: 'true', AUTH_URL: authUrl, INTERNAL_TOKEN })
  const { deps } = await testDeps(t, env)
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)

  const forged = usageEvent(STRANGER, { prompt_tokens: 10, completion_tokens: 0 })
  const real = usageEvent(user.user_id, { prompt_tokens: 10, completion_tokens: 0 })
  await pub.usage(forged)
  await pub.usage(real)
  await pub.usage(usageEvent(STRANGER))
  await waitFor(() => deps.consumers.usage.stats.applied === 1 && deps.consumers.usage.stats.deadLettered === 2, { what: 'one applied, two set aside' })

  t.match(await ledgerOf(deps, user.user_id), [{ kind: 'signup_bonus', change_amount: 1000 }, { kind: 'usage', change_amount: -10, event_id: real.event_id }])
  t.same(await ledgerOf(deps, STRANGER), [], 'no bonus, no charge for the stranger')
  t.notOk(await deps.db.selectFrom('accounts').select('user_id').where('user_id', '=', STRANGER).executeTakeFirst(), 'no account opened')
  t.notOk(await deps.db.selectFrom('processed_events').select('event_id').where('event_id', '=', forged.event_id).executeTakeFirst(), 'not recorded as applied')
  const letters = await deps.db.selectFrom('dead_letters').selectAll().orderBy('id').execute()
  t.equal(letters.length, 2)
  t.match(letters[0], { error: `user ${STRANGER} is unknown to auth: not charged, no account opened`, stream_seq: Number })
  t.equal(JSON.parse(letters[0].payload).event_id, forged.event_id, 'the event is kept whole')
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})

t.test('auth unreachable: events of users without an account wait (retried), others are charged; applied once auth answers', async (t) => {
  const authPort = await freePort()
  const env = await testEnv(t, { BILLING_CHECK_USERS: 'true', AUTH_URL: `http://127.0.0.1:${authPort}`, INTERNAL_TOKEN })
  const { deps } = await testDeps(t, env)
  // A user billing already has an account for needs no question to auth.
  await deps.db.insertInto('accounts').values({ user_id: 5, balance: 100, version: 1 } as never).execute()
  await deps.db.insertInto('transactions').values({ user_id: 5, change_amount: 100, balance_after: 100, kind: 'recharge', description: '充值', source_id: 'seed' } as never).execute()
  await deps.start()
  const pub = publisher(deps, env.EVENTS_NAMESPACE)

  const auth = await buildAuth(t, { INTERNAL_TOKEN })
  const user = await auth.register()
  const waiting = usageEvent(user.user_id, { prompt_tokens: 7, completion_tokens: 0 })
  const known = usageEvent(5, { prompt_tokens: 3, completion_tokens: 0 })
  await pub.usage(waiting)
  await pub.usage(known)
  await waitFor(async () => deps.consumers.usage.stats.applied === 1 && deps.consumers.usage.stats.retried >= 2, { what: 'the known user charged, the other retried' })
  t.match(await ledgerOf(deps, 5), [{ change_amount: 100 }, { change_amount: -3, event_id: known.event_id }])
  t.same(await ledgerOf(deps, user.user_id), [], 'nothing yet for the user auth could not be asked about')
  t.equal(deps.consumers.usage.stats.deadLettered, 0, 'not set aside either')

  // Auth comes up: the held-back event is applied on its next delivery, with the bonus first.
  await auth.app.listen({ port: authPort, host: '127.0.0.1' })
  await waitFor(() => deps.consumers.usage.stats.applied === 2, { what: 'the waiting event applied' })
  t.match(await ledgerOf(deps, user.user_id), [{ kind: 'signup_bonus' }, { kind: 'usage', change_amount: -7, event_id: waiting.event_id }])
  t.equal((await auditLedger(deps.db)).breaks.length, 0)
})
