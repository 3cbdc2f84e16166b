// Revoked access tokens (DESIGN §6.3): an in-memory list fed from auth's AUTH_REVOCATIONS stream, checked by every token verifier.
import { setTimeout as sleep } from 'node:timers/promises'
import type { NatsConnection } from '@nats-io/transport-node'
import { DeliverPolicy, jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type ConsumerMessages } from '@nats-io/jetstream'
import Value from 'typebox/value'
import { TokenRevokedSchema, type TokenRevoked } from '@chat-platform/contracts'
import type { Logger } from 'pino'

/** What the list needs to know about a verified token. */
export interface RevocableToken { id: number, jti: string, sid?: string, iat: number }

/**
 * Revoked jtis, revoked sessions (sid) and per-user "not before" times, each kept until no token it revokes can
 * still be valid. `isRevoked` is three Map lookups: it runs on every authenticated request, cache hits included.
 */
export class RevocationList {
  private readonly jtis = new Map<string, number>()
  private readonly sids = new Map<string, number>()
  private readonly notBefore = new Map<number, { at: number, exp: number }>()
  private pruneAt = 0

  get size (): number { return this.jtis.size + this.sids.size + this.notBefore.size }

  add (event: Pick<TokenRevoked, 'jti' | 'sid' | 'user_id' | 'not_before' | 'exp'>, nowMs = Date.now()): void {
    const exp = event.exp
    if (exp * 1000 <= nowMs) return
    if (event.jti) this.jtis.set(event.jti, Math.max(exp, this.jtis.get(event.jti) ?? 0))
    if (event.sid) this.sids.set(event.sid, Math.max(exp, this.sids.get(event.sid) ?? 0))
    if (event.user_id !== undefined && event.not_before !== undefined) {
      const prev = this.notBefore.get(event.user_id)
      this.notBefore.set(event.user_id, { at: Math.max(event.not_before, prev?.at ?? 0), exp: Math.max(exp, prev?.exp ?? 0) })
    }
    this.prune(nowMs)
  }

  isRevoked (token: RevocableToken): boolean {
    if (this.jtis.size !== 0 && this.jtis.has(token.jti)) return true
    if (token.sid !== undefined && this.sids.size !== 0 && this.sids.has(token.sid)) return true
    if (this.notBefore.size !== 0) {
      const nb = this.notBefore.get(token.id)
      if (nb !== undefined && token.iat < nb.at) return true
    }
    return false
  }

  /** Forgets records whose tokens have all expired (at most once a minute). */
  prune (nowMs = Date.now(), force = false): void {
    if (!force && nowMs < this.pruneAt) return
    this.pruneAt = nowMs + 60_000
    const now = nowMs / 1000
    for (const [k, exp] of this.jtis) if (exp <= now) this.jtis.delete(k)
    for (const [k, exp] of this.sids) if (exp <= now) this.sids.delete(k)
    for (const [k, v] of this.notBefore) if (v.exp <= now) this.notBefore.delete(k)
  }
}

export interface RevocationFeedOptions {
  /** The connection, or its promise (the gateway boots without waiting for NATS). */
  nc: NatsConnection | Promise<NatsConnection>
  /** The AUTH_REVOCATIONS stream name (namespaced). */
  stream: string
  log: Logger
  /** Wait between attempts to attach when the stream is missing or the consumer failed. */
  retryMs?: number
}

/**
 * Keeps a RevocationList in step with the AUTH_REVOCATIONS stream: an ordered (ephemeral) consumer reads it
 * from its first message at boot (the catch-up), then follows it. `ready()` throws until the catch-up has
 * reached the stream's last message at attach time, so a process does not serve tokens it may not know are
 * revoked. A missing stream means nothing was ever revoked (auth creates it before issuing any token): ready,
 * and attached as soon as it appears.
 */
export class RevocationFeed {
  readonly list = new RevocationList()
  private caughtUp = false
  private stopped = false
  private messages?: ConsumerMessages
  private loop?: Promise<void>
  private readonly stopping = new AbortController()
  private readonly log: Logger
  private readonly opts: RevocationFeedOptions

  constructor (opts: RevocationFeedOptions) {
    this.opts = opts
    this.log = opts.log
  }

  start (): void {
    this.loop ??= this.run()
  }

  async ready (): Promise<void> {
    if (!this.caughtUp) throw new Error('revocations not caught up yet')
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.stopping.abort()
    await this.messages?.close().catch(() => {})
    await this.loop
  }

  private async run (): Promise<void> {
    const retryMs = this.opts.retryMs ?? 1_000
    while (!this.stopped) {
      try {
        await this.follow()
      } catch (err) {
        if (!this.stopped) this.log.warn({ err, stream: this.opts.stream }, 'revocation feed: attaching failed, retrying')
      }
      if (!this.stopped) await sleep(retryMs, undefined, { signal: this.stopping.signal }).catch(() => {})
    }
  }

  private async follow (): Promise<void> {
    // A connection still being made must not hold up stop().
    const stopped = new Promise<undefined>((resolve) => { this.stopping.signal.addEventListener('abort', () => resolve(undefined), { once: true }) })
    const nc = await Promise.race([this.opts.nc, stopped])
    if (!nc || this.stopped) return
    const jsm = await jetstreamManager(nc)
    let target: number
    try {
      const info = await jsm.streams.info(this.opts.stream)
      target = info.state.messages === 0 ? 0 : info.state.last_seq
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
        this.caughtUp = true
        return
      }
      throw err
    }
    if (target === 0) this.caughtUp = true
    const consumer = await jetstream(nc).consumers.get(this.opts.stream, { deliver_policy: DeliverPolicy.All })
    const messages = await consumer.consume({ abort_on_missing_resource: true })
    this.messages = messages
    if (this.stopped) { await messages.close(); return }
    for await (const m of messages) {
      let data: unknown
      try { data = m.json() } catch { data = undefined }
      if (Value.Check(TokenRevokedSchema, data)) this.list.add(data)
      else this.log.error({ stream: this.opts.stream, seq: m.seq }, 'revocation feed: malformed revocation ignored')
      if (!this.caughtUp && (m.seq >= target || m.info.pending === 0)) {
        this.caughtUp = true
        this.log.info({ revocations: this.list.size, seq: m.seq }, 'revocation feed caught up')
      }
    }
  }
}
