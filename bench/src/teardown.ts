// A `t`-like teardown collector for startSystem and friends: teardowns run last-registered first, once.

export class Teardowns {
  private readonly fns: (() => unknown)[] = []
  private running?: Promise<void>

  teardown (fn: () => unknown): void { this.fns.push(fn) }

  /** Runs every teardown (newest first); a failing one is reported and the rest still run. */
  run (): Promise<void> {
    this.running ??= (async () => {
      while (this.fns.length) {
        const fn = this.fns.pop()!
        try { await fn() } catch (err) { process.stderr.write(`[bench] teardown failed: ${(err as Error).message}\n`) }
      }
    })()
    return this.running
  }
}
