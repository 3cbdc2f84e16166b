// Process start-up: HEAP_GROWING_PERCENT is checked, and V8 applies it to the collections that follow.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ConfigError, DEFAULT_HEAP_GROWING_PERCENT, tuneHeap } from '../src/index.ts'

const fixture = fileURLToPath(new URL('./fixtures/heap-growing.ts', import.meta.url))

/**
 * The growing factor V8 applied at the fixture's last full collection, after it tuned its heap with `percent`
 * (--trace-gc-verbose prints `[HeapController] Limit: old size: …, new limit: … (factor)` at each one).
 */
function factor (percent: string | undefined): string | undefined {
  const env = { ...process.env, HEAP_GROWING_PERCENT: percent }
  if (percent === undefined) delete env.HEAP_GROWING_PERCENT
  // The test's own loader flags (TypeScript), then V8's tracing of heap sizing.
  const r = spawnSync(process.execPath, [...process.execArgv, '--trace-gc-verbose', '--expose-gc', fixture], { env, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`fixture exited ${r.status}: ${r.stderr}`)
  return [...r.stdout.matchAll(/\[HeapController\] Limit: .*\((\d+\.\d)\)/g)].map((m) => m[1]).at(-1)
}

t.test('the default bounds the heap at 1.4× what is live after a full collection', async (t) => {
  t.equal(DEFAULT_HEAP_GROWING_PERCENT, 40)
  t.equal(factor(undefined), '1.4')
})

t.test('HEAP_GROWING_PERCENT sets it; 0 leaves V8 its own heuristics', async (t) => {
  t.equal(factor('100'), '2.0')
  const own = factor('0')
  t.ok(own !== undefined && own !== '1.4', `V8's own factor (${own})`)
})

t.test('a value that is not a percentage refuses to start, naming the variable', async (t) => {
  for (const bad of ['-1', '301', '1.5', 'lots']) {
    t.throws(() => tuneHeap({ HEAP_GROWING_PERCENT: bad }), ConfigError, bad)
    t.throws(() => tuneHeap({ HEAP_GROWING_PERCENT: bad }), { message: /HEAP_GROWING_PERCENT/ })
  }
  t.equal(tuneHeap({ HEAP_GROWING_PERCENT: '' }), DEFAULT_HEAP_GROWING_PERCENT, 'empty is the default')
})
