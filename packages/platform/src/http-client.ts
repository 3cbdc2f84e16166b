// Calls between services (internal endpoints): bounded by a timeout, request id passed on.
import { ProblemError } from './errors.ts'

export interface InternalCallOptions { method?: string, body?: unknown, requestId?: string, timeoutMs?: number, headers?: Record<string, string> }

/** Like callService, but a 404 answer is `null` (the other service says: no such thing). */
export async function callServiceOrNull<T> (baseUrl: string, path: string, opts: InternalCallOptions = {}): Promise<T | null> {
  return await callService<T>(baseUrl, path, { ...opts, notFoundAsNull: true }) as T | null
}

/** Fetches JSON from another service; an unreachable or failing service becomes 503 `service_unavailable`. */
export async function callService<T> (baseUrl: string, path: string, opts: InternalCallOptions & { notFoundAsNull?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
  if (opts.requestId) headers['x-request-id'] = opts.requestId
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(new URL(path, baseUrl), {
      method: opts.method ?? 'GET',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 3_000)
    })
  } catch (err) {
    throw new ProblemError('service_unavailable', 'A service this request needs is unavailable; try again shortly.', { cause: err })
  }
  if (res.status === 404 && opts.notFoundAsNull) {
    await res.body?.cancel()
    return null as T
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '')
    throw new ProblemError('service_unavailable', 'A service this request needs is unavailable; try again shortly.', { cause: new Error(`${path} answered ${res.status}: ${text.slice(0, 200)}`) })
  }
  return await res.json() as T
}
