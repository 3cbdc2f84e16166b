// Password hashing: argon2id with explicit OWASP parameters, verification, the dummy hash, rehash detection, the bounds on
// concurrent and waiting hashes.
import t from 'tap'
import { hash, parseOptions } from '@node-rs/argon2'
import { availableParallelism } from 'node:os'
import { ProblemError } from '@chat-platform/platform'
import { holdHashing } from './hold-hashing.ts'
import { hashPassword, verifyPassword, needsRehash, dummyHash, passwordHashing, PASSWORD_HASH_OPTIONS, WAITING_PER_SLOT } from '../src/passwords.ts'

t.test('hashes are argon2id m=19456 t=2 p=1 with a random salt', async (t) => {
  const a = await hashPassword('hunter2-hunter2')
  const b = await hashPassword('hunter2-hunter2')
  t.not(a, b, 'salted')
  t.match(a, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  t.same(PASSWORD_HASH_OPTIONS, { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 })
})

t.test('verifyPassword: right, wrong, no stored hash, corrupt stored hash', async (t) => {
  const h = await hashPassword('right password')
  t.equal(await verifyPassword(h, 'right password'), true)
  t.equal(await verifyPassword(h, 'wrong password'), false)
  t.equal(await verifyPassword(null, 'right password'), false)
  t.equal(await verifyPassword(undefined, ''), false)
  t.equal(await verifyPassword('not-a-phc-string', 'x'), false)
  t.equal(parseOptions(await dummyHash()).memoryCost, 19456, 'the dummy costs what a real hash costs')
})

t.test('needsRehash flags other parameters and garbage', async (t) => {
  t.equal(needsRehash(await hashPassword('x')), false)
  t.equal(needsRehash(await hash('x', { algorithm: 2, memoryCost: 4096, timeCost: 3, parallelism: 1 })), true)
  t.equal(needsRehash(await hash('x', { algorithm: 1, memoryCost: 19456, timeCost: 2, parallelism: 1 })), true, 'argon2i')
  t.equal(needsRehash('garbage'), true)
})

t.test('at most one argon2 operation per core runs at once, hashes and verifications together', async (t) => {
  const n = passwordHashing.limit
  t.equal(n, Math.max(1, availableParallelism()))
  const stored = await hashPassword('right password')
  await dummyHash()
  passwordHashing.maxInFlight = 0

  const verifications = Array.from({ length: 3 * n }, (_, i) =>
    verifyPassword(i % 3 === 2 ? null : stored, i % 3 === 0 ? 'right password' : 'wrong password'))
  const hashes = Array.from({ length: 3 * n }, (_, i) => hashPassword(`password ${i}`))
  // Each call takes its slot or joins the queue before its first await; the n without a stored hash first await
  // the dummy hash, so they are not queued yet.
  t.equal(passwordHashing.inFlight, n, 'the first n start at once')
  t.equal(passwordHashing.waiting, 4 * n, 'the rest wait')

  t.same(await Promise.all(verifications), verifications.map((_, i) => i % 3 === 0), 'right answers: only the right password on a stored hash')
  const made = await Promise.all(hashes)
  for (const [i, h] of made.entries()) t.equal(await verifyPassword(h, `password ${i}`), true)
  t.equal(passwordHashing.maxInFlight, n, 'never more than n at once')
  t.equal(passwordHashing.inFlight, 0)
  t.equal(passwordHashing.waiting, 0)
})

t.test('waiting operations start in arrival order', async (t) => {
  const n = passwordHashing.limit
  const stored = await hashPassword('right password')
  const running = Array.from({ length: n }, () => verifyPassword(stored, 'right password'))
  const started: number[] = []
  const queued = Array.from({ length: 3 * n }, (_, i) => passwordHashing.run(async () => { started.push(i) }))
  t.equal(passwordHashing.waiting, 3 * n)
  await Promise.all([...running, ...queued])
  t.same(started, queued.map((_, i) => i))
})

t.test('a failing operation releases its slot', async (t) => {
  const n = passwordHashing.limit
  passwordHashing.maxInFlight = 0
  const failing = [
    ...Array.from({ length: 2 * n }, () => verifyPassword('not-a-phc-string', 'x')),
    ...Array.from({ length: n }, () => verifyPassword('$argon2id$v=19$m=19456,t=2,p=1$broken', 'x'))
  ]
  const thrown = t.rejects(passwordHashing.run(() => { throw new Error('synchronous') }), /synchronous/)
  const rejected = t.rejects(passwordHashing.run(async () => { throw new Error('asynchronous') }), /asynchronous/)
  t.same(await Promise.all(failing), failing.map(() => false))
  await Promise.all([thrown, rejected])
  t.ok(passwordHashing.maxInFlight <= n)
  t.equal(passwordHashing.inFlight, 0)
  t.equal(passwordHashing.waiting, 0)

  // All n slots are free again: n start at once and one more waits.
  const stored = await hashPassword('right password')
  const after = Array.from({ length: n + 1 }, () => verifyPassword(stored, 'right password'))
  t.equal(passwordHashing.inFlight, n)
  t.equal(passwordHashing.waiting, 1)
  t.same(await Promise.all(after), after.map(() => true))
})

t.test('past WAITING_PER_SLOT waiting per core, an operation is refused at once: 503 with Retry-After, nothing run', async (t) => {
  t.equal(passwordHashing.maxWaiting, passwordHashing.limit * WAITING_PER_SLOT)
  const stored = await hashPassword('right password')
  t.doesNotThrow(() => passwordHashing.ensureRoom(), 'room while a slot or a waiting place is free')
  // Every slot and all 3 waiting places taken.
  const held = holdHashing(t, { tasks: passwordHashing.limit + 3, maxWaiting: 3 })
  t.equal(passwordHashing.waiting, 3, 'the queue is full')
  const refusedBefore = passwordHashing.refused
  t.throws(() => passwordHashing.ensureRoom(), { code: 'service_unavailable', shed: true }, 'ensureRoom refuses as run would')
  let verified = 0
  for (const attempt of [() => verifyPassword(stored, 'right password', () => { verified++ }), () => hashPassword('another password')]) {
    const err = await attempt().then(() => null, (e: unknown) => e) as ProblemError | null
    t.ok(err instanceof ProblemError, 'refused, not answered false')
    t.equal(err?.code, 'service_unavailable')
    t.equal(err?.statusCode, 503)
    t.same(err?.headers, { 'retry-after': '1' })
  }
  t.equal(verified, 0, 'a refused verification is not counted as one')
  t.equal(passwordHashing.refused - refusedBefore, 3, 'every refusal counted once')
  t.equal(passwordHashing.waiting, 3, 'refused operations did not join the queue')
  await held.release()
  t.equal(await verifyPassword(stored, 'right password', () => { verified++ }), true, 'once drained, operations run again')
  t.equal(verified, 1)
})

t.test('a dummy hash refused by a full queue is not kept: the next unknown-email check makes it', async (t) => {
  // A module instance of its own, whose dummy hash has not been made yet.
  const fresh = await import(`../src/passwords.ts?dummy=${Date.now()}`) as typeof import('../src/passwords.ts')
  t.not(fresh.passwordHashing, passwordHashing, 'another instance')
  const held = holdHashing(t, { tasks: fresh.passwordHashing.limit, maxWaiting: 0, slots: fresh.passwordHashing })
  await t.rejects(fresh.verifyPassword(null, 'anything'), { code: 'service_unavailable' })
  await held.release()
  t.equal(await fresh.verifyPassword(null, 'anything'), false, 'answered, not refused again by a kept rejection')
  t.match(await fresh.dummyHash(), /^\$argon2id\$/)
})
