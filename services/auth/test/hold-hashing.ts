// Test helper: fills the argon2 slots (and waiting places) with tasks that end when released, with a test's own
// bound on waiting operations; both undone at teardown, even when the test fails midway.
import { passwordHashing } from '../src/passwords.ts'

interface Teardown { teardown: (fn: () => unknown) => void }
type Slots = typeof passwordHashing

export interface HeldHashing {
  /** One more held task (it runs at once or waits, as `run` decides). */
  hold: () => void
  /** Ends every held task, waits for them, and puts the bound back. */
  release: () => Promise<void>
}

/** Holds `tasks` tasks in `slots` (the shared `passwordHashing` unless another instance is given) with `maxWaiting` set. */
export function holdHashing (t: Teardown, opts: { tasks: number, maxWaiting: number, slots?: Slots }): HeldHashing {
  const slots = opts.slots ?? passwordHashing
  const saved = slots.maxWaiting
  slots.maxWaiting = opts.maxWaiting
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  const held: Promise<void>[] = []
  const hold = () => { held.push(slots.run(() => gate)) }
  for (let i = 0; i < opts.tasks; i++) hold()
  t.teardown(() => { open(); slots.maxWaiting = saved })
  return {
    hold,
    release: async () => {
      open()
      await Promise.all(held)
      slots.maxWaiting = saved
    }
  }
}
