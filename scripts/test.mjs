// Runs the whole tap suite and ends with the plain line `N passed, N failed` (tap's assertion totals).
import { spawnSync, spawn } from 'node:child_process'

const tap = new URL('../node_modules/.bin/tap', import.meta.url).pathname
// Plugins are configured in package.json; build them up front so the first run of a fresh clone is clean.
const build = spawnSync(tap, ['build'], { stdio: ['ignore', 'ignore', 'inherit'] })
if (build.status !== 0) process.exit(build.status ?? 1)

const child = spawn(tap, ['--reporter=tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } })
let summary = null
let buf = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  buf += chunk.toString()
  const lines = buf.split('\n')
  buf = lines.pop() ?? ''
  for (const line of lines) {
    const m = /^# \{ (.*) \}$/.exec(line.trim())
    if (m && /total:/.test(m[1])) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)]))
  }
})
child.on('close', (code) => {
  if (buf) { const m = /^# \{ (.*) \}$/.exec(buf.trim()); if (m) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)])) }
  const pass = summary?.pass ?? 0
  const fail = (summary?.fail ?? 0) + (summary ? 0 : 1)
  process.stdout.write(`\n${pass} passed, ${fail} failed${summary?.skip ? `, ${summary.skip} skipped` : ''}\n`)
  process.exit(code ?? 1)
})
