// One proxied mount (@fastify/http-proxy over the upstream's shared Agent): headers rewritten, failures mapped to 503 problem+json.
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify'
import httpProxy from '@fastify/http-proxy'
import { BODY_LIMIT, sendProblem } from '@chat-platform/platform'
import { isLlmRoute, routeLabel, type ProxyMount } from '../routing.ts'
import { CONNECT_ERRORS, kClientResponse, type Upstream } from '../upstreams.ts'

export interface ProxyTimeouts { defaultMs: number, llmMs: number, connectRetries: number }

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])
// Safe to repeat for idempotent methods only: the request may already have reached the service.
const RETRYABLE = new Set([...CONNECT_ERRORS, 'UND_ERR_SOCKET', 'ECONNRESET'])

/** A client must never choose who it is: these request headers are dropped before proxying. */
const IDENTITY_HEADER = /^(x-(user|auth|authenticated|consumer|remote|forwarded-user|jwt|userinfo|client-id|real-ip)(-|$)|remote-user$|forwarded$|x-forwarded-)/

function upstreamErrorKind (code: string | undefined): string {
  switch (code) {
    case 'ECONNREFUSED': return 'connect_refused'
    case 'UND_ERR_CONNECT_TIMEOUT': case 'ETIMEDOUT': return 'connect_timeout'
    case 'UND_ERR_HEADERS_TIMEOUT': case 'UND_ERR_BODY_TIMEOUT': return 'timeout'
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'dns'
    case 'ECONNRESET': case 'UND_ERR_SOCKET': return 'reset'
    default: return CONNECT_ERRORS.has(code ?? '') ? 'connect_failed' : 'other'
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The client's response once the request is proxied (decorated at the root in app.ts, so requests keep one shape). */
    proxiedTo: ServerResponse | null
  }
}

/** Whether the request went to a service (gateway_upstream_request_duration_seconds times it). */
export const isProxied = (request: FastifyRequest) => request.proxiedTo != null

function flushHead (this: ServerResponse) {
  if (!this.headersSent && !this.destroyed) this.flushHeaders()
}

export async function proxyMount (app: FastifyInstance, opts: { mount: ProxyMount, upstream: Upstream, timeouts: ProxyTimeouts }) {
  const { mount, upstream, timeouts } = opts
  const { upstreamDuration, upstreamErrors } = app.gatewayMetrics

  // Bodies are read whole (≤ 1 MiB, so 413 is ours) and forwarded byte for byte, whatever their type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_request, body, done) => { done(null, body) })

  // The histogram's children by route, method and status, made once: labels() validates the label set and builds a
  // closure on every call. The hook is added to each route (after the zone's onResponse hooks, as a zone hook would
  // run), so it knows its route without reading request.routeOptions (an object built per read). The label of a
  // route without parameters is found once per method instead of matching the ~40 templates per request; a route
  // with a wildcard is labelled from the request's path.
  type Timer = ReturnType<typeof upstreamDuration.labels>
  const timers = new Map<string, Timer>()
  const timeUpstream = (routeUrl: string): onResponseHookHandler => {
    const fixed = !routeUrl.includes('*') && !routeUrl.includes(':')
    const labels = new Map<string, string>()
    return function timeUpstream (request, reply, done) {
      if (isProxied(request)) {
        const method = request.method
        let route = fixed ? labels.get(method) : undefined
        if (route === undefined) {
          route = routeLabel(method, fixed ? routeUrl : request.url.split('?')[0])
          if (fixed) labels.set(method, route)
        }
        const status = reply.statusCode
        const key = `${route}|${method}|${status}`
        let timer = timers.get(key)
        if (timer === undefined) {
          timer = upstreamDuration.labels(upstream.name, route, method, String(status))
          // Bounded by routes × methods × statuses; the cap only guards against the unexpected.
          if (timers.size < 10_000) timers.set(key, timer)
        }
        timer.observe(reply.elapsedTime / 1000)
      }
      done()
    }
  }
  app.addHook('onRoute', (route) => {
    const own = route.onResponse === undefined ? [] : Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]
    route.onResponse = [...own, timeUpstream(route.url)]
  })

  const rewriteRequestHeaders = (request: FastifyRequest, headers: Record<string, unknown>) => {
    const out: Record<string, unknown> = {}
    for (const name in headers) {
      // Every identity header starts with x-, r(emote-user) or f(orwarded): the regex only runs for those.
      const c = name.charCodeAt(0)
      if ((c === 120 || c === 114 || c === 102) && IDENTITY_HEADER.test(name)) continue
      out[name] = headers[name]
    }
    out['x-request-id'] = request.id
    // One address, as the gateway determined it (TRUST_PROXY decides whether X-Forwarded-For was believed).
    out['x-forwarded-for'] = request.ip
    out['x-forwarded-proto'] = request.protocol
    out['x-forwarded-host'] = request.host
    // Read by the upstream's abortOnClientClose interceptor; undici sends string keys only, so it never leaves.
    out[kClientResponse as unknown as string] = request.proxiedTo
    return out
  }

  const rewriteHeaders = (headers: Record<string, unknown>, request?: FastifyRequest) => {
    if (request) headers['x-request-id'] = request.id
    if (String(headers['content-type'] ?? '').startsWith('text/event-stream')) {
      headers['cache-control'] ??= 'no-cache'
      headers['x-accel-buffering'] = 'no'
      // Chat sends an admitted stream's headers before it asks the model; Fastify would hold them until the first
      // event. They go out as soon as the body is piped (its headers are set by then), so the client knows at once.
      request?.proxiedTo?.once('pipe', flushHead)
    }
    return headers
  }

  const onError = (reply: FastifyReply, { error }: { error: Error }) => {
    const cause = (error as { cause?: NodeJS.ErrnoException }).cause ?? (error as NodeJS.ErrnoException)
    if (reply.raw.destroyed || cause?.code === 'GW_CLIENT_CLOSED') {
      reply.request.log.info({ upstream: upstream.name }, 'client went away before the upstream answered')
      return
    }
    const kind = upstreamErrorKind(cause?.code)
    upstreamErrors.labels(upstream.name, kind).inc()
    reply.request.log.warn({ upstream: upstream.name, kind, err: cause?.message }, 'upstream request failed')
    sendProblem(reply, 'service_unavailable', `The ${upstream.name} service is unavailable; try again shortly.`)
  }

  const retryDelay = ({ err, req, attempt }: { err: (Error & { code?: string }) | null, req: { method: string }, attempt: number }) => {
    if (!err || attempt >= timeouts.connectRetries || !IDEMPOTENT.has(req.method)) return null
    const code = err.code ?? (err.cause as { code?: string } | undefined)?.code
    // The DNS interceptor hands the retry the next address (the failed one is skipped for a while).
    return RETRYABLE.has(code ?? '') ? 1 : null
  }

  let seen: object | undefined
  let built: Record<'llm' | 'other', Record<string, unknown>>
  const withTimeout = (options: object, llm: boolean) => {
    if (options !== seen) {
      seen = options
      built = {
        llm: { ...options, timeout: timeouts.llmMs, rewriteRequestHeaders },
        other: { ...options, timeout: timeouts.defaultMs, rewriteRequestHeaders }
      }
    }
    return llm ? built.llm : built.other
  }

  await app.register(httpProxy, {
    upstream: upstream.origin,
    prefix: mount.prefix,
    rewritePrefix: mount.prefix,
    routes: mount.routes,
    httpMethods: mount.methods,
    proxyPayloads: false,
    undici: upstream.dispatcher as never,
    disableRequestLogging: true,
    replyOptions: { rewriteHeaders: rewriteHeaders as never, onError: onError as never, retryDelay: retryDelay as never },
    handler: (request, reply, dest, options) => {
      request.proxiedTo = reply.raw
      // The options differ only by timeout (and by body): built once per kind, not on every request.
      const base = withTimeout(options, request.method === 'POST' && isLlmRoute(request.method, request.url.split('?')[0]))
      if (!Buffer.isBuffer(request.body)) return reply.from(dest, base as never)
      return reply.from(dest, { ...base, body: request.body, contentType: request.headers['content-type'] ?? 'application/octet-stream' } as never)
    }
  })
}
