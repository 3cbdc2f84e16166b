// Streaming: time to the first `delta` event at the client minus the fake upstream's own time to first chunk.
import { performance } from 'node:perf_hooks'
import { request } from 'undici'
import type { BenchContext } from '../context.ts'
import { agent, createSession } from '../http.ts'
import { median, percentile, round } from '../stats.ts'

/**
 * One exchange's times (ms): client request → first delta, and the upstream's own request → first chunk; `before` =
 * client request → the upstream has the request, `headers` = client request → response headers (chat sends them once
 * the exchange is admitted, before it calls the model), `after` = the upstream's first chunk → the client's first delta.
 */
interface Sample { clientTtfb: number, upstreamTtfb: number, before: number, headers: number, after: number }

export async function streamSection (ctx: BenchContext): Promise<void> {
  const { requests, upstreamLatencyMs } = ctx.profile.stream
  const gw = ctx.system.gatewayUrl
  const user = ctx.users[0]
  const { sim } = ctx
  // The simulator is in this process, so both ends are timed on one clock: it records when a request's body had
  // arrived and when it began writing the answer (its first chunk).
  sim.reset({ latencyMs: upstreamLatencyMs, chunkDelayMs: 0, words: 40, reply: undefined, usage: { prompt_tokens: 120, completion_tokens: 60 } })
  const samples: Sample[] = []
  // The same exchanges straight to chat (it verifies the token itself), interleaved: what the gateway hop adds.
  const direct: Sample[] = []
  let failures = 0
  sim.knobs.reply = (messages) => `[simulated] streamed answer to "${messages.at(-1)?.content ?? ''}" ` + 'lorem ipsum dolor sit amet '.repeat(10)
  try {
    let session = 0
    for (let i = 0; i < 2 * (requests + 2); i++) {
      if (i % 10 === 0) session = await createSession(gw, user.token)
      const viaGateway = i % 2 === 0
      const content = `Stream benchmark ${i}`
      const t0 = performance.now()
      const res = await request(`${viaGateway ? gw : ctx.system.url('chat')}/api/sessions/${session}/messages`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ content })
      })
      const tHeaders = performance.now()
      let firstDelta = 0
      let text = ''
      for await (const chunk of res.body) {
        if (!firstDelta) {
          text += (chunk as Buffer).toString()
          if (text.includes('event: delta')) firstDelta = performance.now()
        }
      }
      // The first two of each are warm-up.
      if (i < 4) continue
      // This exchange's upstream request (a session's first exchange is followed by its title's request).
      const upstream = sim.requests.findLast((r) => r.body.stream === true && r.body.messages.at(-1)?.content === content)
      if (res.statusCode !== 200 || !firstDelta || upstream?.firstChunkAt === undefined) { failures++; continue }
      const arrived = upstream.receivedAt
      const firstChunk = upstream.firstChunkAt
      ;(viaGateway ? samples : direct).push({ clientTtfb: firstDelta - t0, upstreamTtfb: firstChunk - arrived, before: arrived - t0, headers: tHeaders - t0, after: firstDelta - firstChunk })
    }
  } finally {
    sim.reset()
  }
  if (failures) ctx.results.notes.push(`stream: ${failures} of ${2 * requests} streaming requests (half through the gateway, half straight to chat) failed or sent no delta event.`)
  const added = samples.map((s) => s.clientTtfb - s.upstreamTtfb)
  const addedDirect = direct.map((s) => s.clientTtfb - s.upstreamTtfb)
  const p50 = (list: Sample[], k: 'before' | 'headers' | 'after') => median(list.map((s) => s[k]))
  ctx.log(`stream: added to first byte p50 ${median(added).toFixed(2)} ms (before the upstream call ${p50(samples, 'before').toFixed(2)} ms, of it to the admitted response's headers ${p50(samples, 'headers').toFixed(2)} ms, forwarding the first chunk ${p50(samples, 'after').toFixed(2)} ms), n=${samples.length}; straight to chat ${median(addedDirect).toFixed(2)} ms (${p50(direct, 'before').toFixed(2)} [headers ${p50(direct, 'headers').toFixed(2)}] + ${p50(direct, 'after').toFixed(2)})`)
  ctx.results.figures.push({
    key: 'stream_ttfb_added_ms',
    label: 'Streaming: first delta at the client minus the upstream\'s time to first chunk (median)',
    value: round(median(added), 2),
    unit: 'ms',
    baseline: `upstream first chunk after ${median(samples.map((s) => s.upstreamTtfb)).toFixed(1)} ms; client first delta after ${median(samples.map((s) => s.clientTtfb)).toFixed(1)} ms; straight to chat (no gateway) +${median(addedDirect).toFixed(2)} ms`,
    target: { op: '<', value: 5 }
  })
  ctx.results.details.stream = {
    requests: samples.length,
    upstream_latency_ms: upstreamLatencyMs,
    added_ms: { p50: round(median(added), 2), p90: round(percentile(added, 90), 2), p99: round(percentile(added, 99), 2) },
    before_upstream_call_ms: { p50: round(median(samples.map((s) => s.before)), 2), p99: round(percentile(samples.map((s) => s.before), 99), 2) },
    admitted_headers_ms: round(p50(samples, 'headers'), 2),
    forwarding_first_chunk_ms: { p50: round(median(samples.map((s) => s.after)), 2), p99: round(percentile(samples.map((s) => s.after), 99), 2) },
    direct_to_chat: {
      requests: direct.length,
      added_ms: { p50: round(median(addedDirect), 2), p99: round(percentile(addedDirect, 99), 2) },
      before_upstream_call_ms: round(p50(direct, 'before'), 2),
      admitted_headers_ms: round(p50(direct, 'headers'), 2),
      forwarding_first_chunk_ms: round(p50(direct, 'after'), 2)
    },
    failures
  }
}
