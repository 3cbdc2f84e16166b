// Server-Sent Events on a hijacked Fastify reply: headers sent at once, no proxy buffering, heartbeats while idle.
import type { FastifyReply } from 'fastify'

export interface SseStream {
  send: (event: string, data: unknown) => void
  /** Set when the client has gone away. */
  readonly closed: boolean
  onClose: (fn: () => void) => void
  end: () => void
}

export const acceptsEventStream = (accept: string | undefined) => !!accept && /(^|,)\s*text\/event-stream\s*(;|,|$)/i.test(accept)

export function openSse (reply: FastifyReply, heartbeatMs: number): SseStream {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': String(reply.request.id)
  })
  // Sent at once, so the gateway has set up the response before the first event arrives.
  res.flushHeaders()
  let closed = false
  const listeners: (() => void)[] = []
  // 'close' before our end() means the client hung up.
  res.on('close', () => {
    if (res.writableEnded) return
    closed = true
    for (const fn of listeners) fn()
  })
  // A comment line keeps idle proxies from timing the stream out while the model thinks.
  const heartbeat = setInterval(() => { if (!closed) res.write(': ping\n\n') }, heartbeatMs)
  heartbeat.unref()
  // The first event leaves at once (time to first byte); later events written in one turn of the event loop
  // (a burst of chunks the model sent together) leave in one write. Node corks the socket for each chunk of a
  // chunked response until the next tick, and a burst the SDK parses in one run of promise jobs holds that tick
  // back until the whole burst is parsed (and the reply's record statement sent): the first event is uncorked
  // by hand instead.
  let sent = false
  let corked = false
  const uncork = () => { corked = false; res.uncork() }
  return {
    send (event, data) {
      if (closed || res.writableEnded) return
      if (sent && !corked) {
        corked = true
        res.cork()
        setImmediate(uncork)
      }
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
      if (!sent) {
        sent = true
        const socket = res.socket
        for (let n = socket?.writableCorked ?? 0; n > 0; n--) socket!.uncork()
      }
    },
    get closed () { return closed },
    onClose (fn) { if (closed) fn(); else listeners.push(fn) },
    end () {
      clearInterval(heartbeat)
      if (!res.writableEnded) res.end()
    }
  }
}
