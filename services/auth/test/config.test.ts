// Auth configuration: defaults, ADMIN_EMAILS parsing, and a bad variable named at boot.
import t from 'tap'
import { ConfigError } from '@chat-platform/platform'
import { loadAuthConfig, adminEmails } from '../src/config.ts'

t.test('defaults', async (t) => {
  const c = loadAuthConfig({})
  t.equal(c.PORT, 3001)
  t.equal(c.JWT_TTL, 7 * 86400)
  t.equal(c.JWT_ISSUER, 'chat-platform')
  t.equal(c.WECHAT_API_BASE, 'https://api.weixin.qq.com')
  t.equal(c.WECHAT_APPID, undefined)
  t.equal(c.WECHAT_SECRET, undefined)
  t.equal(c.BILLING_URL, 'http://127.0.0.1:3003')
  t.equal(adminEmails(c).size, 0)
})

t.test('ADMIN_EMAILS is a comma list, trimmed and lower-cased', async (t) => {
  const c = loadAuthConfig({ ADMIN_EMAILS: ' Root@Example.com,, ops@example.com ,' })
  t.same([...adminEmails(c)].sort(), ['ops@example.com', 'root@example.com'])
})

t.test('bad values are refused, naming the variable (and never echoing a secret)', async (t) => {
  const err = t.throws(() => loadAuthConfig({ JWT_TTL: 'a week', WECHAT_API_BASE: 'ftp://x', LOGIN_MAX_FAILURES_PER_EMAIL: '0' })) as ConfigError
  t.type(err, ConfigError)
  t.match(err.message, /JWT_TTL/)
  t.match(err.message, /WECHAT_API_BASE/)
  t.match(err.message, /LOGIN_MAX_FAILURES_PER_EMAIL/)
})
