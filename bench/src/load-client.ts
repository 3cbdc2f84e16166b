// The bench side of the load generator: starts load-worker.ts (pinned to the last core) and hands it jobs.
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { spawnTs } from './procs.ts'
import type { LatencyResult, LoadJob, ThroughputResult } from './load-worker.ts'

export class LoadGenerator {
  private readonly child: ChildProcess
  private readonly pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  private seq = 0
  private readonly ready: Promise<void>
  private stderr = ''

  constructor (opts: { cpuList: string, pinned: boolean }) {
    this.child = spawnTs(fileURLToPath(new URL('./load-worker.ts', import.meta.url)), { ipc: true, ...opts })
    this.child.stderr!.on('data', (b: Buffer) => { this.stderr = (this.stderr + b.toString()).slice(-4000) })
    this.child.stdout!.resume()
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => {
        const err = new Error(`load generator exited with ${code}: ${this.stderr}`)
        reject(err)
        for (const p of this.pending.values()) p.reject(err)
      })
      this.child.on('message', (msg: { ready?: boolean, id?: number, result?: unknown, error?: string }) => {
        if (msg.ready) { resolve(); return }
        const p = this.pending.get(msg.id!)
        if (!p) return
        this.pending.delete(msg.id!)
        if (msg.error) p.reject(new Error(msg.error))
        else p.resolve(msg.result)
      })
    })
    // A worker closed before it came up (a section that failed first) is not an unhandled rejection; jobs still see it.
    this.ready.catch(() => {})
  }

  get pid () { return this.child.pid }

  private async send<T> (job: LoadJob): Promise<T> {
    await this.ready
    const id = ++this.seq
    return await new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.send({ id, job })
    })
  }

  throughput (job: Omit<Extract<LoadJob, { kind: 'throughput' }>, 'kind'>) { return this.send<ThroughputResult>({ kind: 'throughput', ...job }) }
  latency (job: Omit<Extract<LoadJob, { kind: 'latency' }>, 'kind'>) { return this.send<LatencyResult>({ kind: 'latency', ...job }) }

  async close (): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.disconnect()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(timer)
  }
}
