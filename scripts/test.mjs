// Runs the whole tap suite and ends with the plain line `N passed, N failed` (tap's assertion totals).
// On a full run (no file arguments) it also enforces the coverage thresholds below: tap itself only
// knows "100 %" or "anything", so the thresholds live here.
import { spawn } from 'node:child_process'
import { build, TARGETS } from './build.mjs'

const tap = new URL('../node_modules/.bin/tap', import.meta.url).pathname

// A run of chosen files skips coverage: its partial figures are noise (the thresholds apply to the full run only).
const files = process.argv.slice(2)
// Bundles never count towards coverage (package.json's tap `coverage-exclude`: their coverage would land on the
// sources with other function boundaries). tap resolves those globs when it starts, so they must exist by then.
if (files.length === 0) {
  try {
    await build(Object.keys(TARGETS))
  } catch (err) {
    process.stderr.write(`[test] building the bundles failed: ${err.message}\n`)
    process.exit(1)
  }
}
const child = spawn(tap, ['--reporter=tap', ...(files.length ? ['--disable-coverage'] : []), ...files], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } })
const THRESHOLDS = { Statements: 90, Branches: 80, Functions: 90, Lines: 90 }
const coverage = {}
let summary = null
let buf = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  buf += chunk.toString()
  const lines = buf.split('\n')
  buf = lines.pop() ?? ''
  for (const line of lines) {
    const c = /^(Statements|Branches|Functions|Lines)\s*:\s*([\d.]+)%/.exec(line.trim())
    if (c) coverage[c[1]] = Number(c[2])
    const m = /^# \{ (.*) \}$/.exec(line.trim())
    if (m && /total:/.test(m[1])) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)]))
  }
})
child.on('close', (exitCode) => {
  let code = exitCode
  if (buf) { const m = /^# \{ (.*) \}$/.exec(buf.trim()); if (m) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)])) }
  const pass = summary?.pass ?? 0
  let fail = (summary?.fail ?? 0) + (summary ? 0 : 1)
  if (files.length === 0) {
    for (const [metric, min] of Object.entries(THRESHOLDS)) {
      if (coverage[metric] !== undefined && coverage[metric] < min) {
        process.stdout.write(`coverage: ${metric} ${coverage[metric]}% is below the threshold of ${min}%\n`)
        fail++
        code = code || 1
      }
    }
  }
  process.stdout.write(`\n${pass} passed, ${fail} failed${summary?.skip ? `, ${summary.skip} skipped` : ''}\n`)
  process.exit(code ?? 1)
})
