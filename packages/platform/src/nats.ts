// NATS JetStream: the connection, and creating or updating the streams a service produces to or consumes from.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { nanos, TimeoutError } from '@nats-io/nats-core'
import { jetstreamManager, JetStreamApiCodes, JetStreamApiError, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream'
import type { Logger } from 'pino'

export interface NatsOptions { url: string, name: string, log?: Logger }

export interface NatsServers { servers: string[], user?: string, pass?: string }

/**
 * Parses `NATS_URL`: one or more server URLs, comma-separated (the nodes of a cluster; the client learns the
 * others from the one it reaches). A NATS user goes in the URL as in `DATABASE_URL`
 * (`nats://chat:<password>@nats:4222`, percent-encoded where needed); the client takes it apart, since it
 * does not read credentials from a URL itself. Every URL that names a user must name the same one.
 */
export function parseNatsUrl (url: string): NatsServers {
  const out: NatsServers = { servers: [] }
  for (const raw of url.split(',').map((s) => s.trim()).filter(Boolean)) {
    const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `nats://${raw}`
    let u: URL
    try { u = new URL(withScheme) } catch { throw new Error(`NATS_URL: "${raw.replace(/\/\/[^@/]*@/, '//***@')}" is not a URL`) }
    if (u.username || u.password) {
      const user = decodeURIComponent(u.username)
      const pass = decodeURIComponent(u.password)
      if ((out.user !== undefined && out.user !== user) || (out.pass !== undefined && out.pass !== pass)) throw new Error('NATS_URL: the servers name different users')
      out.user = user
      out.pass = pass
    }
    out.servers.push(`${u.protocol}//${u.host}`)
  }
  if (out.servers.length === 0) throw new Error('NATS_URL: no server')
  return out
}

/** The inbox prefix of a NATS user's connections: `_INBOX.<user>` (plain `_INBOX` for a name a subject cannot hold). */
export const natsInboxPrefix = (user: string) => /^[A-Za-z0-9_-]+$/.test(user) ? `_INBOX.${user}` : '_INBOX'

/**
 * Connects and keeps reconnecting forever: a service keeps serving while NATS is away, and its outbox
 * holds what it could not publish.
 */
export async function connectNats (opts: NatsOptions): Promise<NatsConnection> {
  const { servers, user, pass } = parseNatsUrl(opts.url)
  const nc = await connect({
    servers,
    // A NATS user may subscribe to its own inboxes only (infra/nats/users.conf): replies come to `_INBOX.<user>.…`.
    ...(user !== undefined ? { user, pass, inboxPrefix: natsInboxPrefix(user) } : {}),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    timeout: 5_000,
    // Without it every request (each JetStream publish and ack) builds two Error objects up front for their stack
    // traces: 2.7% of chat's CPU under the send bench. A timeout still rejects with TimeoutError, only without the caller's stack.
    noAsyncTraces: true
  })
  if (opts.log) {
    const log = opts.log
    const watch = async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') log.warn({ nats: s.type }, `nats ${s.type}`)
      }
    }
    watch().catch(() => {})
  }
  return nc
}

export interface StreamSpec {
  name: string
  subjects: string[]
  /** This stream's retention in seconds, instead of `maxAgeDays` (AUTH_REVOCATIONS: as long as an access token lives). */
  maxAgeSeconds?: number
}

/**
 * Ensures each stream exists with limits retention (events are kept for replay), file storage and a
 * 2-minute de-duplication window. Only features nats-server 2.9 has are used.
 *
 * Replicas booting together create the same streams at once. A clustered nats-server 2.9 may leave such a
 * concurrent create or update unanswered (the client times out while the first one succeeds), so a timed-out
 * call is retried: the next attempt finds the stream and updates it to the same config.
 */
export async function ensureStreams (nc: NatsConnection, specs: StreamSpec[], opts: { maxAgeDays: number, replicas: number, attempts?: number }): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc)
  for (const spec of specs) {
    const config = {
      subjects: spec.subjects,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(spec.maxAgeSeconds !== undefined ? spec.maxAgeSeconds * 1000 : opts.maxAgeDays * 24 * 3600 * 1000),
      duplicate_window: nanos(120_000),
      num_replicas: opts.replicas
    }
    const attempts = opts.attempts ?? 6
    for (let attempt = 1; ; attempt++) {
      try {
        await ensureStream(jsm, spec.name, config)
        break
      } catch (err) {
        if (!(err instanceof TimeoutError) || attempt >= attempts) throw err
        await new Promise((resolve) => setTimeout(resolve, 250 * attempt))
      }
    }
  }
  return jsm
}

async function ensureStream (jsm: JetStreamManager, name: string, config: Partial<StreamConfig>): Promise<void> {
  try {
    await jsm.streams.info(name)
    await jsm.streams.update(name, config)
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err
    try {
      await jsm.streams.add({ name, ...config })
    } catch (addErr) {
      // Another replica created it in between: fine.
      if (!(addErr instanceof JetStreamApiError) || !/already in use|exists/i.test(addErr.message)) throw addErr
    }
  }
}

export async function pingNats (nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) throw new Error('nats connection closed')
  await nc.flush()
}
