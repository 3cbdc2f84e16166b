// Container health check: exits 0 when this process answers GET /healthz with 200 (slim images have no curl).
const port = process.env.PORT ?? '8080'
const timeoutMs = Number(process.env.HEALTHCHECK_TIMEOUT_MS ?? 2000)

try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(timeoutMs) })
  await res.arrayBuffer()
  process.exit(res.status === 200 ? 0 : 1)
} catch {
  process.exit(1)
}
