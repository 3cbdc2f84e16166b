// Runs the whole tap suite and ends with the plain line `N passed, N failed` (tap's assertion totals).
// On a full run (no file arguments) it also enforces the coverage thresholds below: tap itself only
// knows "100 %" or "anything", so the thresholds live here.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

const tap = new URL('../node_modules/.bin/tap', import.meta.url).pathname

// A run of chosen files skips coverage: its partial figures are noise (the thresholds apply to the full run only).
const files = process.argv.slice(2)
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
/**
 * The sources whose coverage came from processes that transpiled them differently. c8 merges processes' V8
 * coverage of a file by offsets into its transpiled text and keeps one process's source map, so such a file's
 * figures are nonsense (and differ from run to run). packages/platform/src/testing/coverage.ts keeps children
 * consistent; this names what slips through.
 */
function mixedTranspilations () {
  const dir = new URL('../.tap/', import.meta.url)
  const root = new URL('../', import.meta.url).href
  const seen = new Map() // source URL -> Map(line lengths -> process)
  let files = []
  try { files = readdirSync(new URL('coverage/', dir)) } catch { return [] }
  for (const f of files) {
    let cov
    try { cov = JSON.parse(readFileSync(new URL(`coverage/${f}`, dir), 'utf8')) } catch { continue }
    let proc = f
    try { proc = JSON.parse(readFileSync(new URL(`processinfo/${f}`, dir), 'utf8')).argv.slice(1).join(' ').replaceAll(root.slice('file://'.length), '') } catch {}
    const note = (url, shape) => { if (!seen.has(url)) seen.set(url, new Map()); seen.get(url).set(shape, proc) }
    const maps = cov['source-map-cache'] ?? {}
    for (const { url } of cov.result ?? []) {
      if (url.startsWith(root) && url.endsWith('.ts') && !url.includes('/node_modules/') && !maps[url]) note(url, 'no source map')
    }
    for (const [url, entry] of Object.entries(maps)) {
      if (!url.startsWith(root) || url.includes('/node_modules/')) continue
      if (url.endsWith('.ts')) note(url, JSON.stringify(entry.lineLengths))
      // A bundle's map points at our sources too: its coverage lands on them with other function boundaries.
      else if ((entry.data?.sources ?? []).some((s) => s.endsWith('.ts') && !s.includes('node_modules'))) note(url, 'bundle')
    }
  }
  const out = []
  for (const [url, shapes] of seen) {
    if (shapes.size > 1 || shapes.has('bundle')) out.push(`${url.slice(root.length)}: ${[...shapes.values()].join(' | ')}`)
  }
  return out
}

child.on('close', (exitCode) => {
  let code = exitCode
  if (buf) { const m = /^# \{ (.*) \}$/.exec(buf.trim()); if (m) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)])) }
  const pass = summary?.pass ?? 0
  let fail = (summary?.fail ?? 0) + (summary ? 0 : 1)
  if (files.length === 0) {
    const mixed = mixedTranspilations()
    if (mixed.length) {
      process.stdout.write(`coverage: ${mixed.length} source files were covered under more than one transpilation, so the figures are wrong:\n${mixed.slice(0, 10).map((m) => `  ${m}\n`).join('')}`)
      fail++
      code = code || 1
    }
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
