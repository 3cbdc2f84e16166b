// The platform's BatchConsumer with an in-memory handler on real JetStream: it waits for a missing stream, sets aside
// malformed events in the commit of their batch, falls back to one event at a time, and acks only what was applied.
import t from 'tap'
import { Type } from 'typebox'
import { connect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import pino from 'pino'
import { BatchConsumer, ensureStreams, type ApplyOutcome, type EventHandler, type SetAside } from '../src/index.ts'
import { testNamespace, waitFor, TEST_NATS_URL } from '../src/testing/index.ts'

const EventSchema = Type.Object({ event_id: Type.String(), n: Type.Integer() })
interface Event { event_id: string, n: number }

/** A handler keeping what it applied and set aside; `failWhen` makes a batch holding such an event throw. */
function memoryHandler (failWhen: (e: Event) => unknown = () => false) {
  const applied = new Map<string, Event>()
  const setAside: SetAside[] = []
  const handler: EventHandler<typeof EventSchema> = {
    schema: EventSchema,
    async apply (events, aside) {
      const bad = events.find(failWhen)
      if (bad) throw Object.assign(new Error(`event ${bad.event_id} refused`), { code: bad.n < 0 ? '22003' : '08006' })
      const outcomes = new Map<string, ApplyOutcome>()
      for (const e of events) {
        outcomes.set(e.event_id, applied.has(e.event_id) ? 'duplicate' : 'applied')
        applied.set(e.event_id, e)
      }
      setAside.push(...aside)
      return outcomes
    },
    async setAside (rows) { setAside.push(...rows) }
  }
  return { handler, applied, setAside }
}

async function setup (t: { teardown: (fn: () => unknown) => void }, handler: EventHandler<typeof EventSchema>, opts: { stream?: boolean } = {}) {
  const ns = testNamespace(t)
  const nc = await connect({ servers: TEST_NATS_URL })
  t.teardown(() => nc.close())
  const spec = { name: `${ns}_THINGS`, subjects: [`${ns}.thing.>`] }
  if (opts.stream !== false) await ensureStreams(nc, [spec], { maxAgeDays: 1, replicas: 1 })
  const consumer = new BatchConsumer({
    nc,
    log: pino({ level: 'silent' }),
    stream: spec.name,
    durable: 'things',
    filterSubject: `${ns}.thing.done`,
    handler,
    ackWaitMs: 1000,
    batchSize: 10,
    retryDelayMs: 50,
    streamWaitMs: 100
  })
  t.teardown(() => consumer.stop())
  const js = jetstream(nc)
  const publish = (payload: unknown) => js.publish(`${ns}.thing.done`, typeof payload === 'string' ? payload : JSON.stringify(payload))
  return { nc, spec, consumer, publish, createStream: () => ensureStreams(nc, [spec], { maxAgeDays: 1, replicas: 1 }) }
}

t.test('a missing stream is waited for (never created), then consumed', async (t) => {
  const mem = memoryHandler()
  const { nc, spec, consumer, publish, createStream } = await setup(t, mem.handler, { stream: false })
  await consumer.start()
  await t.rejects(consumer.ready(), /consumer things waits for stream .*_THINGS \(created by its producer\)/)
  const jsm = await jetstreamManager(nc)
  await t.rejects(jsm.streams.info(spec.name), /not found/, 'the consumer did not create the stream')
  await createStream()
  await waitFor(() => consumer.ready().then(() => true, () => false), { what: 'bound' })
  await publish({ event_id: 'a', n: 1 })
  await waitFor(() => mem.applied.has('a'), { what: 'applied' })
  t.equal(consumer.stats.applied, 1)
})

t.test('malformed events are set aside with the batch, applied ones acked once, duplicates counted', async (t) => {
  const mem = memoryHandler()
  const { nc, spec, consumer, publish } = await setup(t, mem.handler)
  await publish({ event_id: 'a', n: 1 })
  await publish('{not json')
  await publish({ event_id: 'b', n: 'two' })
  await publish({ event_id: 'a', n: 1 })
  await consumer.start()
  await waitFor(() => consumer.stats.applied + consumer.stats.duplicates + consumer.stats.deadLettered === 4, { what: 'four handled' })
  t.match(consumer.stats, { applied: 1, duplicates: 1, deadLettered: 2 })
  t.same(mem.setAside.map((r) => r.error).sort(), ['payload does not match the schema: /n must be integer', 'payload is not JSON'])
  t.same(mem.setAside.map((r) => r.stream_seq).sort(), [2, 3])
  // Everything was acked or terminated: nothing pending or awaiting an ack on the durable.
  await waitFor(async () => (await (await jetstreamManager(nc)).consumers.info(spec.name, 'things')).num_ack_pending === 0, { what: 'acks and terms received' })
  t.equal((await (await jetstreamManager(nc)).consumers.info(spec.name, 'things')).num_pending, 0)
})

t.test('a batch that fails is applied one event at a time: a permanent refusal is set aside, a transient one retried', async (t) => {
  let down = true
  const mem = memoryHandler((e) => e.n < 0 || (e.n === 99 && down))
  const { consumer, publish } = await setup(t, mem.handler)
  await publish({ event_id: 'ok-1', n: 1 })
  await publish({ event_id: 'bad', n: -1 })
  await publish({ event_id: 'later', n: 99 })
  await publish({ event_id: 'ok-2', n: 2 })
  await consumer.start()
  await waitFor(() => mem.applied.has('ok-1') && mem.applied.has('ok-2') && consumer.stats.retried > 0, { what: 'the good ones applied, one retried' })
  t.ok(consumer.stats.batchFallbacks >= 1, 'fell back to one at a time')
  t.match(mem.setAside, [{ stream_seq: 2, error: /^rejected by the database: event bad refused/ }])
  t.notOk(mem.applied.has('later'), 'not applied while it fails')
  down = false
  await waitFor(() => mem.applied.has('later'), { what: 'the retried event applied once it can be' })
  t.equal(consumer.stats.applied, 3)
})
