// NATS JetStream: the connection, and creating or updating the streams a service produces to or consumes from.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { nanos } from '@nats-io/nats-core'
import { jetstreamManager, JetStreamApiCodes, JetStreamApiError, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream'
import type { Logger } from 'pino'

export interface NatsOptions { url: string, name: string, log?: Logger }

/**
 * Connects and keeps reconnecting forever: a service keeps serving while NATS is away, and its outbox
 * holds what it could not publish.
 */
export async function connectNats (opts: NatsOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.url.split(','),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    timeout: 5_000
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

export interface StreamSpec { name: string, subjects: string[] }

/**
 * Ensures each stream exists with limits retention (events are kept for replay), file storage and a
 * 2-minute de-duplication window. Only features nats-server 2.9 has are used.
 */
export async function ensureStreams (nc: NatsConnection, specs: StreamSpec[], opts: { maxAgeDays: number, replicas: number }): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc)
  for (const spec of specs) {
    const config = {
      subjects: spec.subjects,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(opts.maxAgeDays * 24 * 3600 * 1000),
      duplicate_window: nanos(120_000),
      num_replicas: opts.replicas
    }
    try {
      await jsm.streams.info(spec.name)
      await jsm.streams.update(spec.name, config)
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err
      try {
        await jsm.streams.add({ name: spec.name, ...config })
      } catch (addErr) {
        // Another replica created it in between: fine.
        if (!(addErr instanceof JetStreamApiError) || !/already in use|exists/i.test(addErr.message)) throw addErr
      }
    }
  }
  return jsm
}

export async function pingNats (nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) throw new Error('nats connection closed')
  await nc.flush()
}
