// Public trust zone: register, the two logins and refresh, no token needed, a strict rate limit per client IP.
import type { FastifyInstance } from 'fastify'
import type { Redis } from '@chat-platform/platform'
import { CALLBACK_MOUNTS, PUBLIC_MOUNTS, RESET_MOUNTS } from '../routing.ts'
import type { Upstreams } from '../upstreams.ts'
import { registerRateLimit } from '../plugins/rate-limit.ts'
import { proxyMount, type ProxyTimeouts } from './proxy.ts'

export interface ZoneOptions {
  upstreams: Upstreams
  redis: Redis
  timeouts: ProxyTimeouts
  rateLimit: { max: number, windowMs: number, syncMs?: number }
}

/** Password reset (request a code, confirm it): public, per client IP, its own stricter limit. */
export async function passwordResetRoutes (app: FastifyInstance, opts: ZoneOptions) {
  await registerRateLimit(app, { zone: 'password_reset', redis: opts.redis, nameSpace: 'gw:rl:reset:', ...opts.rateLimit })
  for (const mount of RESET_MOUNTS) {
    await app.register(proxyMount, { mount, upstream: opts.upstreams[mount.upstream], timeouts: opts.timeouts })
  }
}

/** Payment callbacks: no token, no per-address limit (their proof is the payment provider's signature, checked by billing). */
export async function callbackRoutes (app: FastifyInstance, opts: Omit<ZoneOptions, 'rateLimit'>) {
  for (const mount of CALLBACK_MOUNTS) {
    await app.register(proxyMount, { mount, upstream: opts.upstreams[mount.upstream], timeouts: opts.timeouts })
  }
}

export default async function publicRoutes (app: FastifyInstance, opts: ZoneOptions) {
  await registerRateLimit(app, { zone: 'auth', redis: opts.redis, nameSpace: 'gw:rl:auth:', ...opts.rateLimit })
  for (const mount of PUBLIC_MOUNTS) {
    await app.register(proxyMount, { mount, upstream: opts.upstreams[mount.upstream], timeouts: opts.timeouts })
  }
}
