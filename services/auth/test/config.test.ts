// Auth configuration: defaults, ADMIN_EMAILS refused, and a bad variable named at boot.
import t from 'tap'
import { ConfigError } from '@chat-platform/platform'
import { loadAuthConfig } from '../src/config.ts'

t.test('defaults', async (t) => {
  const c = loadAuthConfig({})
  t.equal(c.PORT, 3001)
  t.equal(c.JWT_TTL, 3600, 'one hour (DESIGN §5)')
  t.equal(c.ADMIN_JWT_TTL, 3600)
  t.equal(c.LOGIN_MAX_FAILURES_PER_EMAIL_IP, 10)
  t.equal(c.LOGIN_MAX_FAILURES_PER_EMAIL, 100)
  t.equal(c.LOGIN_MAX_FAILURES_PER_IP, 100)
  t.equal(c.PASSWORD_HASH_QUEUE_MAX, undefined, '64 per core, set by the app')
  t.equal(c.JWT_ISSUER, 'chat-platform')
  t.equal(c.WECHAT_API_BASE, 'https://api.weixin.qq.com')
  t.equal(c.WECHAT_APPID, undefined)
  t.equal(c.WECHAT_SECRET, undefined)
  t.equal(c.BILLING_URL, 'http://127.0.0.1:3003')
  t.notOk('ADMIN_EMAILS' in c)
})

t.test('ADMIN_EMAILS no longer exists: setting it stops the boot, pointing at admin:grant', async (t) => {
  const err = t.throws(() => loadAuthConfig({ ADMIN_EMAILS: 'boss@example.com' })) as ConfigError
  t.type(err, ConfigError)
  t.match(err.message, /ADMIN_EMAILS: no longer supported.*pnpm ops admin:grant/)
  t.equal(loadAuthConfig({ ADMIN_EMAILS: '' }).PORT, 3001, 'empty (as compose passes an unset one) is fine')
})

t.test('bad values are refused, naming the variable (and never echoing a secret)', async (t) => {
  const err = t.throws(() => loadAuthConfig({ JWT_TTL: 'a week', WECHAT_API_BASE: 'ftp://x', LOGIN_MAX_FAILURES_PER_EMAIL: '0' })) as ConfigError
  t.type(err, ConfigError)
  t.match(err.message, /JWT_TTL/)
  t.match(err.message, /WECHAT_API_BASE/)
  t.match(err.message, /LOGIN_MAX_FAILURES_PER_EMAIL/)
})
