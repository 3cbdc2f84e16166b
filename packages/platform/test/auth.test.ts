// The cached token verifier: what it accepts, that a cached token still expires on time, and that the cache is bounded.
import t from 'tap'
import { generateKeyPairSync, sign } from 'node:crypto'
import { createTokenVerifier, IAT_SKEW_SECONDS } from '../src/auth.ts'
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
  // Flip the first signature byte: the last characters of base64url carry padding bits, so changing them
  // can leave the decoded signature as it was.
  const signature = Buffer.from(s, 'base64url')
  signature[0] ^= 0xff
  t.throws(() => verify(`${h}.${p}.${signature.toString('base64url')}`))
})

t.test('the cache is bounded: the oldest entries are forgotten, and verifying them again still works', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform', 3)
  const tokens = [1, 2, 3, 4, 5].map((id) => signTestToken(id))
  for (const token of tokens) verify(token)
  t.same(tokens.map((token) => verify(token).id), [1, 2, 3, 4, 5])
})

/** Signs the payload exactly as given (fast-jwt's signer would fix up an odd iat). */
function signRaw (payload: Record<string, unknown>): string {
  const data = `${Buffer.from('{"alg":"EdDSA","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`
  return `${data}.${sign(null, Buffer.from(data), testKeys.privateKey).toString('base64url')}`
}

t.test('sub must be a canonical decimal user id within Number.MAX_SAFE_INTEGER', async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform')
  t.equal(verify(signTestToken('1')).id, 1)
  t.equal(verify(signTestToken(String(Number.MAX_SAFE_INTEGER))).id, Number.MAX_SAFE_INTEGER, 'the largest safe integer')
  for (const sub of ['007', '07', '7.0', '7.', '1e3', ' 7', '7 ', '+7', '-7', '0x7', '0b1', '0o7', '7n', '٧', '', '0', '9007199254740992', '99999999999999999', 'Infinity', 'NaN']) {
    t.throws(() => verify(signTestToken(sub)), `sub ${JSON.stringify(sub)}`)
  }
  for (const sub of [7, [7], { id: 7 }, true, null]) {
    t.throws(() => verify(signTestToken(1, { sub })), `sub ${JSON.stringify(sub)} (not a string)`)
  }
})

t.test(`iat may lie at most ${IAT_SKEW_SECONDS} s in the future; it must be a number`, async (t) => {
  const verify = createTokenVerifier(testKeys.publicKey, 'chat-platform')
  const now = Math.floor(Date.now() / 1000)
  t.equal(verify(signTestToken(21, { iat: now })).id, 21)
  t.equal(verify(signTestToken(22, { iat: now + IAT_SKEW_SECONDS - 5 })).id, 22, 'within the skew (clocks differ a little)')
  t.equal(verify(signTestToken(23, { iat: now - 3000 })).id, 23, 'in the past')
  t.throws(() => verify(signTestToken(24, { iat: now + IAT_SKEW_SECONDS + 5 })), 'beyond the skew')
  t.throws(() => verify(signTestToken(25, { iat: now + 86_400 * 365 })), 'a year ahead')
  for (const iat of [String(now), null, [now], true]) t.throws(() => verify(signRaw({ sub: '26', iat, exp: now + 60, iss: 'chat-platform', jti: 'j' })), `iat ${JSON.stringify(iat)}`)
  t.equal(verify(signRaw({ sub: '27', iat: now, exp: now + 60, iss: 'chat-platform', jti: 'j' })).id, 27, 'the hand-signed control passes')
})
