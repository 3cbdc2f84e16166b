// A login flood past auth's argon2 queue, through the gateway: refused at once with 503 and Retry-After, never
// answered as a wrong password, and the owner of an account can log in once it has passed.
import { availableParallelism } from 'node:os'
import t from 'tap'
import { startSystem } from './support/system.ts'
import { assertProblem, registerUser, uniqueEmail, type Reply } from './support/client.ts'

t.setTimeout(120_000)

// No argon2 operation may wait (one runs per core): any login arriving while every core hashes is refused. The
// gateway's per-IP limit on auth routes and auth's per-IP throttle are raised so that neither answers first.
const system = await startSystem(t, {
  procs: ['auth', 'gateway'],
  env: { PASSWORD_HASH_QUEUE_MAX: '0', AUTH_RATE_LIMIT_MAX: '10000', LOGIN_MAX_FAILURES_PER_IP: '10000' }
})

t.test('logins past the queue are 503 service_unavailable with Retry-After: 1; the rest are answered as usual', async (t) => {
  const owner = await registerUser(system, 'owner')
  const answers: Reply[] = []
  // Logins for unknown emails, 24 at once (4 per core of this host, auth's, if more), until one of them found every
  // core busy (the first burst nearly always does).
  const burst = Math.max(24, 4 * availableParallelism())
  for (let round = 0; round < 20 && !answers.some((r) => r.status === 503); round++) {
    answers.push(...await Promise.all(Array.from({ length: burst }, () =>
      system.request('POST', '/api/auth/email-login', { body: { email: uniqueEmail('flood'), password: 'not the password' } }))))
  }
  const refused = answers.filter((r) => r.status === 503)
  t.ok(refused.length > 0, `some logins were refused (${refused.length} of ${answers.length})`)
  t.same(answers.map((r) => r.status).filter((s) => s !== 401 && s !== 503), [], 'every answer is 401 or 503: no other error, never a 200')
  assertProblem(t, refused[0], 503, 'service_unavailable', 'a refused login')
  t.equal(refused[0].headers.get('retry-after'), '1')
  for (const r of answers.filter((a) => a.status === 401)) t.equal(r.body.code, 'invalid_credentials')

  const login = await system.request('POST', '/api/auth/email-login', { body: { email: owner.email, password: owner.password } })
  t.equal(login.status, 200, 'the flood over, the owner logs in')
})
