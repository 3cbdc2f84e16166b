// One undici Agent per upstream service: pipelining 1, DNS round-robin over every address, dead addresses skipped, client hang-ups passed on.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
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

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

/**
 * A handler passing every callback on to `next` (one object per request, its methods on the prototype: the
 * interceptors below used to build six closures per request each).
 */
class PassOn implements Handler {
  protected readonly next: Handler
  constructor (next: Handler) { this.next = next }
  onRequestStart (c: Controller, ctx: unknown): void { this.next.onRequestStart?.(c, ctx) }
  onRequestUpgrade (c: Controller, s: number, h: IncomingHttpHeaders, sock: Duplex): void { this.next.onRequestUpgrade?.(c, s, h, sock) }
  onResponseStart (c: Controller, s: number, h: IncomingHttpHeaders, m?: string): void { this.next.onResponseStart?.(c, s, h, m) }
  onResponseData (c: Controller, chunk: Buffer): void { this.next.onResponseData?.(c, chunk) }
  onResponseEnd (c: Controller, t: IncomingHttpHeaders): void { this.next.onResponseEnd?.(c, t) }
  onResponseError (c: Controller, err: Error): void { this.next.onResponseError?.(c, err) }
}

/** Records whether the address undici dialled took the connection. */
class AddressHealth extends PassOn {
  private readonly key: string
  private readonly downUntil: Map<string, number>
  private readonly cooldownMs: number
  constructor (next: Handler, key: string, downUntil: Map<string, number>, cooldownMs: number) {
    super(next)
    this.key = key
    this.downUntil = downUntil
    this.cooldownMs = cooldownMs
  }

  override onResponseStart (c: Controller, s: number, h: IncomingHttpHeaders, m?: string): void {
    if (this.downUntil.size !== 0) this.downUntil.delete(this.key)
    this.next.onResponseStart?.(c, s, h, m)
  }

  override onResponseError (c: Controller, err: Error): void {
    if (CONNECT_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) this.downUntil.set(this.key, Date.now() + this.cooldownMs)
    this.next.onResponseError?.(c, err)
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
  return (dispatch) => (opts, handler) => dispatch(opts, new AddressHealth(handler, keyOf(String(opts.origin)), downUntil, cooldownMs))
}

const clientClosed = () => Object.assign(new Error('client closed the connection'), { code: 'GW_CLIENT_CLOSED' })

/** Aborts the upstream request when the client's response closes before it finished. */
class AbortOnClose extends PassOn {
  private readonly res: ServerResponse
  private controller: Controller | undefined
  private gone: boolean
  private readonly onClose = () => {
    if (this.res.writableFinished) return
    this.gone = true
    this.controller?.abort(clientClosed())
  }

  constructor (next: Handler, res: ServerResponse) {
    super(next)
    this.res = res
    res.on('close', this.onClose)
    this.gone = res.destroyed
  }

  override onRequestStart (c: Controller, ctx: unknown): void {
    this.controller = c
    this.next.onRequestStart?.(c, ctx)
    if (this.gone && !c.aborted) this.onClose()
  }

  override onResponseEnd (c: Controller, t: IncomingHttpHeaders): void {
    this.res.off('close', this.onClose)
    this.next.onResponseEnd?.(c, t)
  }

  override onResponseError (c: Controller, err: Error): void {
    this.res.off('close', this.onClose)
    this.next.onResponseError?.(c, err)
  }
}

/**
 * Outermost interceptor: when the client goes away before the upstream answered (or while it streams),
 * the upstream request is aborted at once, so the service sees the hang-up (and stops its LLM call).
 */
const abortOnClientClose: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
  const headers = opts.headers as Record<string | symbol, unknown> | undefined
  const res = headers?.[kClientResponse] as ServerResponse | undefined
  // The symbol stays on the headers object: undici serializes string keys only.
  return res ? dispatch(opts, new AbortOnClose(handler, res)) : dispatch(opts, handler)
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
