// `pnpm start`: builds the four processes (scripts/build.mjs, under a second), then runs gateway, auth, chat and
// billing together under plain node; SIGTERM stops all.
import { spawn } from 'node:child_process'
import { relative } from 'node:path'
import { ROOT, TARGETS, build } from './build.mjs'

const procs = ['auth', 'billing', 'chat', 'gateway']
try {
  for (const r of await build(procs)) process.stderr.write(`[build] ${relative(ROOT, r.outfile)} ${(r.bytes / 1024).toFixed(0)} kB in ${r.ms.toFixed(0)} ms\n`)
} catch (err) {
  process.stderr.write(`[start] build failed: ${err.message}\n`)
  process.exit(1)
}

let stopping = false
const children = procs.map((name) => {
  const { dir, out } = TARGETS[name]
  // The same command as each package's `start` script and the images' CMD.
  const child = spawn(process.execPath, ['--enable-source-maps', out], { cwd: `${ROOT}${dir}`, stdio: ['ignore', 'inherit', 'inherit'], env: process.env })
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[start] ${name} exited (${signal ?? code}); stopping the others\n`)
      stop(code || 1)
    }
  })
  return child
})

// A child killed by a signal keeps exitCode null (signalCode is set instead).
const running = (c) => c.exitCode === null && c.signalCode === null

function stop (code = 0) {
  if (stopping) return
  stopping = true
  let left = children.filter(running).length
  if (left === 0) process.exit(code)
  for (const c of children) {
    if (!running(c)) continue
    c.once('exit', () => { if (--left === 0) process.exit(code) })
    c.kill('SIGTERM')
  }
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))
