// Loaded with NODE_OPTIONS=--import into a profiled process (Node 20 refuses --cpu-prof there): the first
// SIGWINCH starts the V8 CPU profiler, the second writes $BENCH_CPU_PROF_DIR/<name>-<pid>.cpuprofile
// (SIGWINCH because it is ignored by default, and close-with-grace treats SIGUSR2 as a shutdown).
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'

const session = new Session()
session.connect()
let running = false
process.on('SIGWINCH', () => {
  if (!running) {
    session.post('Profiler.enable')
    session.post('Profiler.setSamplingInterval', { interval: 500 })
    session.post('Profiler.start')
    running = true
    return
  }
  running = false
  session.post('Profiler.stop', (err, result) => {
    if (err) return
    const file = `${process.env.BENCH_CPU_PROF_DIR}/${process.env.BENCH_CPU_PROF_NAME ?? 'process'}-${process.pid}.cpuprofile`
    writeFileSync(file, JSON.stringify(result.profile))
  })
})
