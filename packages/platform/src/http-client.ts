// Calls between services (internal endpoints): bounded by a timeout, request id and internal token passed on;
// one typed client per serving service (authInternal, billingInternal, chatInternal) over the contracts' endpoints.
import { INTERNAL_TOKEN_HEADER, InternalEndpoints, internalPath, type InternalEndpoint, type InternalInput, type InternalOutput } from '@chat-platform/contracts'
import { ProblemError, problems } from './errors.ts'

export interface InternalCallOptions {
  method?: string
  body?: unknown
  requestId?: string
  timeoutMs?: number
  headers?: Record<string, string>
  /** Who is called, for errors and logs (default: the host of the base URL). */
  service?: string
}

let internalToken: string | undefined

/** The INTERNAL_TOKEN every internal call of this process carries (createHttpApp sets it from the config). */
export function setInternalToken (token: string | undefined): void {
  internalToken = token
}

const UNAVAILABLE = 'A service this request needs is unavailable; try again shortly.'

/**
 * An internal call that failed. Clients see only the generic 503 (no internal names); `service`, `status`
 * (null: never answered) and `upstreamDetail` say what happened, for logs and ops commands.
 */
export class ServiceCallError extends ProblemError {
  readonly service: string
  readonly method: string
  readonly path: string
  readonly status: number | null
  readonly upstreamCode: string | null
  readonly upstreamDetail: string

  constructor (call: { service: string, method: string, path: string, status: number | null, upstreamCode?: string | null, upstreamDetail: string }, cause?: unknown) {
    super('service_unavailable', UNAVAILABLE, { cause: cause ?? new Error(`${call.path} answered ${call.status}: ${call.upstreamDetail}`) })
    this.service = call.service
    this.method = call.method
    this.path = call.path
    this.status = call.status
    this.upstreamCode = call.upstreamCode ?? null
    this.upstreamDetail = call.upstreamDetail
  }

  /** One line naming the service, the call, the status and the detail. */
  describe (): string {
    const call = `${this.service} ${this.method} ${this.path.split('?')[0]}`
    if (this.status === null) return `${call}: no answer (${this.upstreamDetail})`
    return `${call} answered ${this.status}${this.upstreamCode ? ` ${this.upstreamCode}` : ''}: ${this.upstreamDetail}`
  }
}

/** Like callService, but a 404 answer is `null` (the other service says: no such thing). */
export async function callServiceOrNull<T> (baseUrl: string, path: string, opts: InternalCallOptions = {}): Promise<T | null> {
  return await callService<T>(baseUrl, path, { ...opts, notFoundAsNull: true }) as T | null
}

/** Fetches JSON from another service; an unreachable or failing service becomes a ServiceCallError (503 `service_unavailable`). */
export async function callService<T> (baseUrl: string, path: string, opts: InternalCallOptions & { notFoundAsNull?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (internalToken !== undefined) headers[INTERNAL_TOKEN_HEADER] = internalToken
  Object.assign(headers, opts.headers)
  if (opts.requestId) headers['x-request-id'] = opts.requestId
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  const url = new URL(path, baseUrl)
  const call = { service: opts.service ?? url.host, method: opts.method ?? 'GET', path }
  let res: Response
  try {
    res = await fetch(url, {
      method: call.method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 3_000)
    })
  } catch (err) {
    const e = err as Error & { cause?: { code?: string, message?: string } }
    throw new ServiceCallError({ ...call, status: null, upstreamDetail: e.cause?.message || e.cause?.code || e.message }, err)
  }
  if (res.status === 404 && opts.notFoundAsNull) {
    await res.body?.cancel()
    return null as T
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '')
    let problem: { code?: unknown, detail?: unknown } = {}
    try { problem = JSON.parse(text) } catch { /* not a problem+json body */ }
    throw new ServiceCallError({
      ...call,
      status: res.status,
      upstreamCode: typeof problem.code === 'string' ? problem.code : null,
      upstreamDetail: typeof problem.detail === 'string' ? problem.detail : text.slice(0, 200) || '(empty body)'
    })
  }
  return await res.json() as T
}

/** Options of one typed internal call (or a client's defaults). */
export interface InternalClientOptions {
  requestId?: string
  timeoutMs?: number
  /** Who is called, for errors and logs (default: the host of the base URL). */
  service?: string
  /** INTERNAL_TOKEN for a caller outside a service (tests, tools); a service's own calls carry its token already. */
  token?: string
}

/**
 * One call of a contracted internal endpoint: the path from the contract, its method and body; a 404 is null
 * when the contract says 404 is an answer. Failures as callService.
 */
export async function callInternal<E extends InternalEndpoint> (baseUrl: string, endpoint: E, input: InternalInput<E>, opts: InternalClientOptions = {}): Promise<InternalOutput<E>> {
  return await callService<InternalOutput<E>>(baseUrl, internalPath(endpoint, input), {
    method: endpoint.method,
    body: (input as { body?: unknown }).body,
    requestId: opts.requestId,
    timeoutMs: opts.timeoutMs,
    service: opts.service,
    headers: opts.token === undefined ? undefined : { [INTERNAL_TOKEN_HEADER]: opts.token },
    notFoundAsNull: endpoint.notFoundIsNull === true
  })
}

const client = (baseUrl: string, defaults: InternalClientOptions) =>
  async <E extends InternalEndpoint>(endpoint: E, input: InternalInput<E>, opts?: InternalClientOptions) =>
    await callInternal(baseUrl, endpoint, input, { ...defaults, ...opts })

/** Auth's internal endpoints at `baseUrl` (AUTH_URL). */
export function authInternal (baseUrl: string, defaults: InternalClientOptions = {}) {
  const call = client(baseUrl, defaults)
  const e = InternalEndpoints
  return {
    /** The user, or null when auth has no such user. */
    user: async (userId: number, opts?: InternalClientOptions) => await call(e.user, { params: { user_id: userId } }, opts),
    /** The user's openid in the WeChat app `appid`, or null (no such user, or no identity in that app). */
    wechatOpenid: async (userId: number, appid: string, opts?: InternalClientOptions) => await call(e.wechatOpenid, { params: { user_id: userId }, query: { appid } }, opts),
    /** The development mailbox's mails (to one address when given), newest first; 404 (a failure) without the mailbox. */
    devMailbox: async (to?: string, opts?: InternalClientOptions) => await call(e.devMailbox, { query: { to } }, opts)
  }
}

/** Billing's internal endpoints at `baseUrl` (BILLING_URL). */
export function billingInternal (baseUrl: string, defaults: InternalClientOptions = {}) {
  const call = client(baseUrl, defaults)
  const e = InternalEndpoints
  return {
    /** Balance and chat_applied (the account opened on first access), or null for a user auth does not know. */
    balance: async (userId: number, opts?: InternalClientOptions) => await call(e.balance, { params: { user_id: userId } }, opts),
    /** Ids of the usage events billing applied with `occurred_at` in [since, until). */
    usageEvents: async (window: { since: string, until?: string }, opts?: InternalClientOptions) => await call(e.usageEvents, { query: window }, opts)
  }
}

/** Chat's internal endpoints at `baseUrl` (CHAT_URL). */
export function chatInternal (baseUrl: string, defaults: InternalClientOptions = {}) {
  const call = client(baseUrl, defaults)
  const e = InternalEndpoints
  return {
    /** Usage recorded with `occurred_at` in [since, until), and the exchanges left pending by a dead process. */
    usage: async (window: { since: string, until?: string }, opts?: InternalClientOptions) => await call(e.usage, { query: window }, opts),
    /** Puts these usage events back in chat's outbox; answers how many it requeued. */
    republish: async (eventIds: string[], opts?: InternalClientOptions) => await call(e.usageRepublish, { body: { event_ids: eventIds } }, opts)
  }
}

/** The schema a serving route declares for a contracted internal endpoint (hidden from the public API reference). */
export function internalRouteSchema<E extends InternalEndpoint> (endpoint: E) {
  return {
    hide: true,
    ...(endpoint.params === undefined ? {} : { params: endpoint.params }),
    ...(endpoint.querystring === undefined ? {} : { querystring: endpoint.querystring }),
    ...(endpoint.body === undefined ? {} : { body: endpoint.body }),
    response: { 200: endpoint.response, ...problems(...endpoint.problems) }
  } as { hide: true, params: E['params'], querystring: E['querystring'], body: E['body'], response: { 200: E['response'] } }
}
