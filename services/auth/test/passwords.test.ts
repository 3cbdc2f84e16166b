// Password hashing: argon2id with explicit OWASP parameters, verification, the dummy hash, rehash detection.
import t from 'tap'
import { hash, parseOptions } from '@node-rs/argon2'
import { hashPassword, verifyPassword, needsRehash, dummyHash, PASSWORD_HASH_OPTIONS } from '../src/passwords.ts'

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
