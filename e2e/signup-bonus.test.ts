// SIGNUP_BONUS_ON=verified_email through the real processes (auth and billing set alike, no MAIL_URL: the development
// mailbox): an account reads 0 until its address is verified, then holds the bonus, once; the ledger audits clean.
import t from 'tap'
import { waitFor } from '@chat-platform/platform/testing'
import { startSystem } from './support/system.ts'
import { assertAuditPasses, registerUser, SIGNUP_BONUS } from './support/client.ts'

t.setTimeout(180_000)

const system = await startSystem(t, { env: { SIGNUP_BONUS_ON: 'verified_email', AUTH_RATE_LIMIT_MAX: '1000' } })
const balance = async (token: string) => (await system.request('GET', '/api/user/balance', { token })).body.balance
const codeFor = async (email: string): Promise<string> => {
  let code: string | undefined
  await waitFor(async () => {
    const mails = await system.internal.auth.devMailbox(email)
    code = /([0-9]{6})/.exec(mails[0]?.text ?? '')?.[1]
    return code !== undefined
  }, { what: `a code in the development mailbox for ${email}` })
  return code!
}

t.test('the bonus waits for the verified address and comes once', async (t) => {
  const u = await registerUser(system, 'verify-first')
  t.equal(await balance(u.token), 0, 'registered, not verified: the account opens at 0')
  const code = await codeFor(u.email)
  t.equal((await system.request('POST', '/api/auth/email/verify', { token: u.token, body: { code } })).status, 200)
  await waitFor(async () => await balance(u.token) === SIGNUP_BONUS, { what: 'the bonus after verification' })
  t.equal((await system.request('POST', '/api/auth/email/verify', { token: u.token, body: { code } })).status, 200, 'verified again')
  const tx = (await system.request('GET', '/api/billing/transactions', { token: u.token })).body as { description: string }[]
  t.equal(tx.filter((r) => r.description === '注册赠送').length, 1, 'one bonus row')
  t.equal(await balance(u.token), SIGNUP_BONUS)
  await assertAuditPasses(t, system)
})
