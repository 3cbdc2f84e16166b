// The proxy's lean histogram: what Prometheus scrapes is what prom-client's own Histogram prints for the same observations.
import t from 'tap'
import { Histogram, Registry } from 'prom-client'
import { LeanHistogram } from '../../src/plugins/gateway-metrics.ts'

const BUCKETS = [0.005, 0.1, 1, 2.5]
// On a bound, below the first, between, above the last, and several in one series.
const OBSERVED: [string, string, number][] = [['chat', 'GET', 0.005], ['chat', 'GET', 0.0001], ['chat', 'GET', 0.3], ['chat', 'GET', 7], ['billing', 'POST', 1], ['billing', 'POST', 2.5]]

const scrape = async (register: (registry: Registry) => { observe: (u: string, m: string, v: number) => void }) => {
  const registry = new Registry()
  const h = register(registry)
  for (const [u, m, v] of OBSERVED) h.observe(u, m, v)
  return { registry, text: await registry.metrics() }
}

t.test('the exposition matches prom-client\'s Histogram line for line: cumulative buckets, +Inf, sum and count', async (t) => {
  const opts = { name: 'x_duration_seconds', help: 'test', labelNames: ['upstream', 'method'] as const, buckets: BUCKETS }
  const lean = await scrape((registry) => {
    const h = new LeanHistogram({ ...opts, registers: [registry] })
    return { observe: (u, m, v) => h.labels(u, m).observe(v) }
  })
  const reference = await scrape((registry) => {
    const h = new Histogram({ ...opts, labelNames: [...opts.labelNames], registers: [registry] })
    return { observe: (u, m, v) => h.labels(u, m).observe(v) }
  })
  t.equal(lean.text, reference.text)
  t.match(lean.text, /x_duration_seconds_bucket\{le="0.005",upstream="chat",method="GET"\} 2\n/)
  t.match(lean.text, /x_duration_seconds_bucket\{le="2.5",upstream="chat",method="GET"\} 3\n/)
  t.match(lean.text, /x_duration_seconds_bucket\{le="\+Inf",upstream="chat",method="GET"\} 4\n/)
  t.match(lean.text, /x_duration_seconds_count\{upstream="billing",method="POST"\} 2\n/)
  // The JSON form too (prom-client adds `exemplar: null`, which is not scraped).
  const json = async (r: Registry) => (await r.getMetricsAsJSON())[0].values.map((v) => ({ labels: v.labels, value: v.value, metricName: (v as { metricName?: string }).metricName }))
  t.same(await json(lean.registry), await json(reference.registry))
})

t.test('a child is made once per label set; reset zeroes every series and kept children count again', async (t) => {
  const registry = new Registry()
  const h = new LeanHistogram({ name: 'y_seconds', help: 'test', labelNames: ['route'], buckets: [1], registers: [registry] })
  const child = h.labels('a')
  t.equal(h.labels('a'), child)
  child.observe(0.5)
  child.observe(3)
  t.match(await registry.metrics(), /y_seconds_sum\{route="a"\} 3.5\n/)
  registry.resetMetrics()
  t.match(await registry.metrics(), /y_seconds_bucket\{le="\+Inf",route="a"\} 0\n/)
  child.observe(0.25)
  t.match(await registry.metrics(), /y_seconds_bucket\{le="1",route="a"\} 1\n[^]*y_seconds_count\{route="a"\} 1\n/)
  t.throws(() => child.observe(Number.NaN), TypeError)
  t.throws(() => child.observe(Number.POSITIVE_INFINITY), TypeError)
  t.match(await registry.metrics(), /y_seconds_sum\{route="a"\} 0.25\n/, 'a refused value leaves the series as it was')
  t.throws(() => h.labels('a', 'b'), /1 label values expected/)
  t.throws(() => new LeanHistogram({ name: 'y_seconds', help: 'again', labelNames: ['route'], buckets: [1], registers: [registry] }), /already been registered/)
})
