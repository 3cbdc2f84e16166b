// Streaming: time to the first `delta` event at the client minus the fake upstream's own time to first chunk.
import { performance } from 'node:perf_hooks'
import { request } from 'undici'
import type { BenchContext } from '../context.ts'
import { agent, createSession } from '../http.ts'
import { median, percentile, round } from '../stats.ts'

interface Sample { clientTtfb: number, upstreamTtfb: number, before: number, after: number }

export async function streamSection (ctx: BenchContext): Promise<void> {
  const { requests, upstreamLatencyMs } = ctx.profile.stream
  const gw = ctx.system.gatewayUrl
  const user = ctx.users[0]
  const { sim } = ctx
  // The simulator is in this process, so both ends are timed on one clock: it calls `reply` right before it
  // writes the headers and the first chunks, and records a request (push) as soon as its body has arrived.
  let arrived = 0
  let firstChunk = 0
  const push = sim.requests.push
  sim.requests.push = function (...items) { arrived = performance.now(); return push.apply(this, items) }
  sim.reset({ latencyMs: upstreamLatencyMs, chunkDelayMs: 0, words: 40, reply: undefined, usage: { prompt_tokens: 120, completion_tokens: 60 } })
  const samples: Sample[] = []
  let failures = 0
  try {
    let session = 0
    for (let i = 0; i < requests + 2; i++) {
      if (i % 10 === 0) session = await createSession(gw, user.token)
      sim.knobs.reply = (messages) => {
        firstChunk = performance.now()
        const last = messages.at(-1)?.content ?? ''
        return `[simulated] streamed answer to "${last}" ` + 'lorem ipsum dolor sit amet '.repeat(10)
      }
      const t0 = performance.now()
      const res = await request(`${gw}/api/sessions/${session}/messages`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ content: `Stream benchmark ${i}` })
      })
      let firstDelta = 0
      let text = ''
      for await (const chunk of res.body) {
        if (!firstDelta) {
          text += (chunk as Buffer).toString()
          if (text.includes('event: delta')) firstDelta = performance.now()
        }
      }
      // The first two are warm-up.
      if (i < 2) continue
      if (res.statusCode !== 200 || !firstDelta) { failures++; continue }
      samples.push({ clientTtfb: firstDelta - t0, upstreamTtfb: firstChunk - arrived, before: arrived - t0, after: firstDelta - firstChunk })
    }
  } finally {
    sim.requests.push = push
    sim.reset()
  }
  if (failures) ctx.results.notes.push(`stream: ${failures} of ${requests} streaming requests failed or sent no delta event.`)
  const added = samples.map((s) => s.clientTtfb - s.upstreamTtfb)
  ctx.log(`stream: added to first byte p50 ${median(added).toFixed(2)} ms (before the upstream call ${median(samples.map((s) => s.before)).toFixed(2)} ms, forwarding the first chunk ${median(samples.map((s) => s.after)).toFixed(2)} ms), n=${samples.length}`)
  ctx.results.figures.push({
    key: 'stream_ttfb_added_ms',
    label: 'Streaming: first delta at the client minus the upstream\'s time to first chunk (median)',
    value: round(median(added), 2),
    unit: 'ms',
    baseline: `upstream first chunk after ${median(samples.map((s) => s.upstreamTtfb)).toFixed(1)} ms; client first delta after ${median(samples.map((s) => s.clientTtfb)).toFixed(1)} ms`,
    target: { op: '<', value: 5 }
  })
  ctx.results.details.stream = {
    requests: samples.length,
    upstream_latency_ms: upstreamLatencyMs,
    added_ms: { p50: round(median(added), 2), p90: round(percentile(added, 90), 2), p99: round(percentile(added, 99), 2) },
    before_upstream_call_ms: { p50: round(median(samples.map((s) => s.before)), 2), p99: round(percentile(samples.map((s) => s.before), 99), 2) },
    forwarding_first_chunk_ms: { p50: round(median(samples.map((s) => s.after)), 2), p99: round(percentile(samples.map((s) => s.after), 99), 2) },
    failures
  }
}
