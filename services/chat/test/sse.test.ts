// The SSE writer on a real HTTP connection: the first event is handed to the socket before send() returns (time to
// first byte), while the events after it, written in the same turn of the event loop, leave together.
import t from 'tap'
import Fastify from 'fastify'
import { openSse, type SseStream } from '../src/sse.ts'

t.test('the first event leaves at once, later ones of the same turn are batched', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: { corkedAfterFirst: number, bufferedAfterFirst: number, corkedAfterSecond: number } = { corkedAfterFirst: -1, bufferedAfterFirst: -1, corkedAfterSecond: -1 }
  app.get('/events', async (_request, reply) => {
    const sse: SseStream = openSse(reply, 60_000)
    const socket = reply.raw.socket!
    // As the SDK delivers a burst: every delta in one run of promise jobs, no tick in between.
    await Promise.resolve()
    sse.send('delta', { content: 'first' })
    seen.corkedAfterFirst = socket.writableCorked
    seen.bufferedAfterFirst = socket.writableLength
    sse.send('delta', { content: 'second' })
    seen.corkedAfterSecond = reply.raw.writableCorked
    sse.send('done', { ok: true })
    await new Promise((resolve) => setImmediate(resolve))
    sse.end()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const res = await fetch(`http://127.0.0.1:${port}/events`)
  const body = await res.text()
  t.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(seen.corkedAfterFirst, 0, 'the socket is not corked after the first event')
  t.equal(seen.bufferedAfterFirst, 0, 'the first event was written to the kernel, nothing of it waits in the socket')
  t.equal(seen.corkedAfterSecond, 1, 'the second event waits for the rest of the turn')
  t.equal(body, 'event: delta\ndata: {"content":"first"}\n\nevent: delta\ndata: {"content":"second"}\n\nevent: done\ndata: {"ok":true}\n\n')
})
