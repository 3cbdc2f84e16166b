// One undici Agent per upstream service: pipelining 1, DNS round-robin over every address, dead addresses skipped, client hang-ups passed on.
import type { ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { Agent, interceptors, type Dispatcher } from 'undici'
import type { UpstreamName } from './routing.ts'

type DnsOptions = NonNullable<Parameters<typeof interceptors.dns>[0]>
export type DnsLookup = NonNullable<DnsOptions['lookup']>
type DnsRecords = Parameters<NonNullable<DnsOptions['pick']>>[1]
type DnsRecord = ReturnType<NonNullable<DnsOptions['pick']>>

/** Carried in the request headers from the proxy handler to the dispatcher, then removed: the client's response. */
export const kClientResponse = Symbol('gateway.clientResponse')

/** Errors meaning no connection was made: nothing reached the service. */
export const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'EADDRNOTAVAIL'])

export interface UpstreamOptions {
  connectTimeoutMs: number
  connections: number
  dnsTtlMs: number
  downCooldownMs: number
  /** Replaces DNS resolution (tests map a name to several loopback addresses). */
  lookup?: DnsLookup
}

export interface Upstream {
  name: UpstreamName
  /** The configured origin, e.g. http://chat:3002. */
  origin: string
  dispatcher: Dispatcher
  /** Throws unless the service answers GET /healthz with 200 (one of its addresses). */
  ping: (timeoutMs: number) => Promise<void>
  close: () => Promise<void>
}

const addressKey = (address: string, port: string) => `${address.replace(/^\[|\]$/g, '')}|${port}`

/**
 * Round-robin over every resolved address (both families), skipping addresses that recently refused a
 * connection; if all of them did, the next one is tried anyway. Returning null makes undici resolve again.
 */
function makePick (downUntil: Map<string, number>) {
  return (origin: URL, hostRecords: DnsRecords): DnsRecord => {
    const all = [...(hostRecords.records[4]?.ips ?? []), ...(hostRecords.records[6]?.ips ?? [])] as (DnsRecord & { timestamp: number })[]
    const now = Date.now()
    if (all.length === 0 || all.some((ip) => now - ip.timestamp > ip.ttl)) return null as unknown as DnsRecord
    const state = hostRecords as DnsRecords & { next?: number }
    const start = state.next = ((state.next ?? -1) + 1) % all.length
    for (let i = 0; i < all.length; i++) {
      const ip = all[(start + i) % all.length]
      if ((downUntil.get(addressKey(ip.address, origin.port)) ?? 0) <= now) return ip
    }
    return all[start]
  }
}

/** Innermost interceptor: sees the address undici actually dialled and records whether it took the connection. */
function trackAddressHealth (downUntil: Map<string, number>, cooldownMs: number): Dispatcher.DispatcherComposeInterceptor {
  // Origins repeat (one per address), so each is parsed once, not on every request.
  const keys = new Map<string, string>()
  const keyOf = (origin: string) => {
    let key = keys.get(origin)
    if (key === undefined) {
      const url = new URL(origin)
      key = addressKey(url.hostname, url.port)
      if (keys.size > 1_000) keys.clear()
      keys.set(origin, key)
    }
    return key
  }
  return (dispatch) => (opts, handler) => {
    const key = keyOf(String(opts.origin))
    return dispatch(opts, {
      onRequestStart: (c, ctx) => handler.onRequestStart?.(c, ctx),
      onRequestUpgrade: (c, s, h, sock) => handler.onRequestUpgrade?.(c, s, h, sock),
      onResponseStart: (c, s, h, m) => { downUntil.delete(key); return handler.onResponseStart?.(c, s, h, m) },
      onResponseData: (c, chunk) => handler.onResponseData?.(c, chunk),
      onResponseEnd: (c, t) => handler.onResponseEnd?.(c, t),
      onResponseError: (c, err) => {
        if (CONNECT_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) downUntil.set(key, Date.now() + cooldownMs)
        return handler.onResponseError?.(c, err)
      }
    })
  }
}

/**
 * Outermost interceptor: when the client goes away before the upstream answered (or while it streams),
 * the upstream request is aborted at once, so the service sees the hang-up (and stops its LLM call).
 */
const abortOnClientClose: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
  const headers = opts.headers as Record<string | symbol, unknown> | undefined
  const res = headers?.[kClientResponse] as ServerResponse | undefined
  if (!res) return dispatch(opts, handler)
  let controller: Dispatcher.DispatchController | undefined
  let gone = false
  const onClose = () => {
    if (res.writableFinished) return
    gone = true
    controller?.abort(Object.assign(new Error('client closed the connection'), { code: 'GW_CLIENT_CLOSED' }))
  }
  const cleanup = () => res.off('close', onClose)
  res.on('close', onClose)
  if (res.destroyed) gone = true
  // The symbol stays on the headers object: undici serializes string keys only.
  return dispatch(opts, {
    onRequestStart: (c, ctx) => {
      controller = c
      handler.onRequestStart?.(c, ctx)
      if (gone && !c.aborted) onClose()
    },
    onRequestUpgrade: (c, s, h, sock) => handler.onRequestUpgrade?.(c, s, h, sock),
    onResponseStart: (c, s, h, m) => handler.onResponseStart?.(c, s, h, m),
    onResponseData: (c, chunk) => handler.onResponseData?.(c, chunk),
    onResponseEnd: (c, t) => { cleanup(); return handler.onResponseEnd?.(c, t) },
    onResponseError: (c, err) => { cleanup(); return handler.onResponseError?.(c, err) }
  })
}

export function createUpstream (name: UpstreamName, url: string, opts: UpstreamOptions): Upstream {
  const origin = new URL(url).origin
  const downUntil = new Map<string, number>()
  const agent = new Agent({
    pipelining: 1,
    connections: opts.connections,
    connect: { timeout: opts.connectTimeoutMs },
    keepAliveTimeout: 4_000
  })
  // An address literal needs no resolving (undici's DNS interceptor would parse the origin only to skip it).
  const literal = isIP(new URL(url).hostname.replace(/^\[|\]$/g, '')) !== 0 && !opts.lookup
  const dispatcher = literal
    ? agent.compose(trackAddressHealth(downUntil, opts.downCooldownMs), abortOnClientClose)
    : agent.compose(
      trackAddressHealth(downUntil, opts.downCooldownMs),
      interceptors.dns({ maxTTL: opts.dnsTtlMs, lookup: opts.lookup, pick: makePick(downUntil) }),
      abortOnClientClose
    )
  return {
    name,
    origin,
    dispatcher,
    async ping (timeoutMs) {
      let status: number
      try {
        const res = await dispatcher.request({ origin, path: '/healthz', method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
        await res.body.dump()
        status = res.statusCode
      } catch (err) {
        // /readyz is public: the error code only, never an internal address.
        throw new Error(`unreachable (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
      }
      if (status !== 200) throw new Error(`/healthz answered ${status}`)
    },
    close: () => agent.close()
  }
}

export type Upstreams = Record<UpstreamName, Upstream>
