// The routing table: which public paths go to which service, which need no token, and the route names used in metrics.

export type UpstreamName = 'auth' | 'chat' | 'billing'
export const UPSTREAM_NAMES: UpstreamName[] = ['auth', 'chat', 'billing']

export interface ProxyMount {
  upstream: UpstreamName
  /** Path prefix on the gateway (forwarded unchanged). */
  prefix: string
  /** Routes under the prefix ('' is the prefix itself, '/*' everything below). */
  routes: string[]
  methods: string[]
}

// OPTIONS is left out on purpose: preflights are answered at the edge by CORS, or 404 without it.
const ALL = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']

/** Routes that need no token (stricter per-IP rate limit); refresh carries its proof in the body. */
export const PUBLIC_MOUNTS: ProxyMount[] = [
  { upstream: 'auth', prefix: '/api/auth', routes: ['/register', '/email-login', '/wechat-login', '/refresh'], methods: ['POST'] }
]

/** Password reset: public, with its own much stricter per-IP limit (each request may send a mail). */
export const RESET_MOUNTS: ProxyMount[] = [
  { upstream: 'auth', prefix: '/api/auth/password-reset', routes: ['', '/confirm'], methods: ['POST'] }
]

/**
 * WeChat Pay's payment callback (DESIGN §6.2): no JWT (its proof is WeChat Pay's signature, checked by billing over
 * the raw body, which is forwarded byte for byte) and no per-address limit (WeChat Pay calls from a few addresses and
 * retries for a day on a refusal).
 */
export const CALLBACK_MOUNTS: ProxyMount[] = [
  { upstream: 'billing', prefix: '/api/billing/wechatpay/notify', routes: [''], methods: ['POST'] }
]

/**
 * Admin routes (DESIGN §6.2): a token with role "admin", checked here and again by the owning service. The user
 * search is auth's; everything else (a user's transactions, adjustments, codes, orders, usage) is billing's.
 */
export const ADMIN_MOUNTS: ProxyMount[] = [
  { upstream: 'auth', prefix: '/api/admin/users', routes: [''], methods: ['GET', 'HEAD'] },
  { upstream: 'billing', prefix: '/api/admin', routes: ['/*'], methods: ALL }
]
export const ADMIN_PREFIX = '/api/admin/'

/** Everything else under /api that a client may reach; the JWT is checked first. */
export const AUTHENTICATED_MOUNTS: ProxyMount[] = [
  { upstream: 'auth', prefix: '/api/auth', routes: ['/*'], methods: ALL },
  { upstream: 'auth', prefix: '/api/user/profile', routes: [''], methods: ALL },
  { upstream: 'auth', prefix: '/api/user/password', routes: [''], methods: ALL },
  { upstream: 'auth', prefix: '/api/user/account', routes: [''], methods: ALL },
  { upstream: 'billing', prefix: '/api/user/balance', routes: [''], methods: ALL },
  { upstream: 'billing', prefix: '/api/billing', routes: ['/*'], methods: ALL },
  { upstream: 'chat', prefix: '/api/sessions', routes: ['', '/*'], methods: ALL },
  { upstream: 'chat', prefix: '/api/models', routes: [''], methods: ALL }
]

export const PUBLIC_OPERATIONS = new Set(['POST /api/auth/register', 'POST /api/auth/email-login', 'POST /api/auth/wechat-login', 'POST /api/auth/refresh', 'POST /api/auth/password-reset', 'POST /api/auth/password-reset/confirm', 'POST /api/billing/wechatpay/notify'])

/** The public API of DESIGN §2 as route templates, so metrics have a bounded set of route labels. */
const TEMPLATES: { method: string, template: string, re: RegExp }[] = [
  ['POST', '/api/auth/wechat-login'],
  ['POST', '/api/auth/email-login'],
  ['POST', '/api/auth/register'],
  ['POST', '/api/auth/refresh'],
  ['POST', '/api/auth/logout'],
  ['POST', '/api/auth/logout-all'],
  ['POST', '/api/auth/password-reset'],
  ['POST', '/api/auth/password-reset/confirm'],
  ['POST', '/api/auth/email/verification'],
  ['POST', '/api/auth/email/verify'],
  ['GET', '/api/auth/verify'],
  ['GET', '/api/user/profile'],
  ['PUT', '/api/user/profile'],
  ['PUT', '/api/user/password'],
  ['DELETE', '/api/user/account'],
  ['GET', '/api/user/balance'],
  ['POST', '/api/sessions'],
  ['GET', '/api/sessions'],
  ['PATCH', '/api/sessions/{session_id}'],
  ['DELETE', '/api/sessions/{session_id}'],
  ['POST', '/api/sessions/{session_id}/messages'],
  ['GET', '/api/sessions/{session_id}/messages'],
  ['POST', '/api/sessions/{session_id}/messages/{message_id}/regenerate'],
  ['GET', '/api/models'],
  ['POST', '/api/billing/recharge'],
  ['GET', '/api/billing/transactions'],
  ['GET', '/api/billing/usage'],
  ['GET', '/api/billing/packages'],
  ['POST', '/api/billing/orders'],
  ['GET', '/api/billing/orders'],
  ['GET', '/api/billing/orders/{order_no}'],
  ['POST', '/api/billing/orders/{order_no}/simulate-paid'],
  ['POST', '/api/billing/wechatpay/notify'],
  ['POST', '/api/billing/redeem'],
  ['GET', '/api/admin/users'],
  ['GET', '/api/admin/users/{user_id}/transactions'],
  ['POST', '/api/admin/adjustments'],
  ['POST', '/api/admin/redemption-codes'],
  ['GET', '/api/admin/orders'],
  ['GET', '/api/admin/usage']
].map(([method, template]) => ({ method, template, re: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}/?$`) }))

/** `METHOD /template` for a known route, `other` for anything else. */
export function routeLabel (method: string, path: string): string {
  const m = method === 'HEAD' ? 'GET' : method
  for (const t of TEMPLATES) if (t.method === m && t.re.test(path)) return `${t.method} ${t.template}`
  return 'other'
}

const LLM_POST = /^\/api\/sessions\/[^/]+\/messages(\/[^/]+\/regenerate)?\/?$/

/** Sending a message or regenerating a reply waits for an LLM reply, so it gets the long upstream timeout. */
export const isLlmRoute = (method: string, path: string) => method === 'POST' && LLM_POST.test(path)
