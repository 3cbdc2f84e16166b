// The cached token verifier: what it accepts, that a cached token still expires on time, and that the cache is bounded.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { createTokenVerifier } from '../src/auth.ts'
import { signTestToken, testKeys, waitFor } from '../src/testing/index.ts'

t.test('verifies EdDSA tokens of the issuer into a user; refuses other keys, issuers, non-numeric subjects', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform')
  t.match(verify(signTestToken(7)), { id: 7 })
  t.match(verify(signTestToken(8, { role: 'admin' })), { id: 8, role: 'admin' })
  t.notOk('role' in verify(signTestToken(9, { role: 'root' })), 'only admin is a role')
  const other = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  t.throws(() => verify(signTestToken(7, {}, { privateKey: other })), 'another key')
  t.throws(() => verify(signTestToken(7, {}, { issuer: 'someone-else' })), 'another issuer')
  t.throws(() => verify(signTestToken('abc')), 'a subject that is not a user id')
  t.throws(() => verify(signTestToken(0)), 'user id 0')
})

t.test('a cached token is refused once it expires (the cache never outlives the token)', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform')
  const token = signTestToken(11, {}, { expiresInMs: 1500 })
  t.equal(verify(token).id, 11)
  t.equal(verify(token).id, 11, 'served from the cache')
  await waitFor(() => { try { verify(token); return false } catch { return true } }, { timeoutMs: 5_000, intervalMs: 50, what: 'the token to expire' })
  t.throws(() => verify(token), 'expired, although it was cached')
})

t.test('a tampered copy of a cached token is verified on its own and refused', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform')
  const token = signTestToken(12)
  verify(token)
  const [h, p, s] = token.split('.')
  const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: '13' })).toString('base64url')
  t.throws(() => verify(`${h}.${forged}.${s}`))
  t.throws(() => verify(`${h}.${p}.${s.slice(0, -2)}AA`))
})

t.test('the cache is bounded: the oldest entries are forgotten, and verifying them again still works', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform', 3)
  const tokens = [1, 2, 3, 4, 5].map((id) => signTestToken(id))
  for (const token of tokens) verify(token)
  t.same(tokens.map((token) => verify(token).id), [1, 2, 3, 4, 5])
})
