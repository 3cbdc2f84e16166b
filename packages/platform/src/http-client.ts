// Calls between services (internal endpoints): bounded by a timeout, request id and internal token passed on.
import { INTERNAL_TOKEN_HEADER } from '@chat-platform/contracts'
import { ProblemError } from './errors.ts'

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
  const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
  if (opts.requestId) headers['x-request-id'] = opts.requestId
  if (internalToken !== undefined) headers[INTERNAL_TOKEN_HEADER] = internalToken
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
