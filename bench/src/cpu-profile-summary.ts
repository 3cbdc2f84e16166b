// Reads a .cpuprofile and lists where the samples landed: self time per function and per package.
import { readFileSync } from 'node:fs'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[] }

const shortUrl = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '').replace(/^\/work\/main\//, '')
const pkgOf = (url: string) => {
  const m = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m) return m[1]
  if (!url) return '(native/gc/idle)'
  if (url.startsWith('node:')) return 'node core'
  return shortUrl(url).split('/').slice(0, 2).join('/')
}

export function summarizeProfile (file: string, top = 15): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  // Samples taken inside the hook that started the profiler (its first, long sample) are not the process's work.
  const hook = new Set<number>()
  const mark = (id: number, inside: boolean) => {
    const n = byId.get(id)!
    const now = inside || n.callFrame.url.endsWith('cpu-profile-hook.mjs')
    if (now) hook.add(id)
    for (const c of n.children ?? []) mark(c, now)
  }
  mark(p.nodes[0].id, false)
  const self = new Map<number, number>()
  p.samples.forEach((id, i) => { if (!hook.has(id)) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)) })
  let total = 0
  let idle = 0
  const fn = new Map<string, number>()
  const pkg = new Map<string, number>()
  for (const [id, us] of self) {
    const n = byId.get(id)!
    const name = n.callFrame.functionName || '(anonymous)'
    if (name === '(idle)') { idle += us; continue }
    total += us
    const key = `${name} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
    fn.set(key, (fn.get(key) ?? 0) + us)
    const pk = ['(garbage collector)', '(program)'].includes(name) ? name : pkgOf(n.callFrame.url)
    pkg.set(pk, (pkg.get(pk) ?? 0) + us)
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)} %`
  const lines = [`${file}: ${(total / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle`, '  by package:']
  for (const [k, us] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 12)) lines.push(`  ${pct(us)}  ${k}`)
  lines.push('  by function (self time):')
  for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`)
  return lines.join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const f of process.argv.slice(2)) process.stdout.write(`${summarizeProfile(f)}\n`)
}
