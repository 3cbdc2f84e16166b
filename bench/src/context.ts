// What every bench section gets: the running system, the fake LLM, the run profile, and where results go.
import type { ChildProcess } from 'node:child_process'
import type { Simulator } from '@chat-platform/llm-simulator'
import type { System } from '@chat-platform/e2e/support/system.ts'
import type { Profile } from './profile.ts'
import type { Teardowns } from './teardown.ts'
import type { BenchUser } from './http.ts'

/** One reported figure: the value, the baseline it is compared with (same run), and its target. */
export interface Figure {
  key: string
  label: string
  value: number | null
  unit: string
  baseline?: string
  target?: { op: '>=' | '<=' | '<', value: number }
}

/** One point of a growth curve: the size, the measured value, and what else was seen there. */
export interface CurvePoint { size: number, value: number | null, extra?: string }

/**
 * A growth curve (section `curves`): the same figure at several sizes in one run. `flag` says it grows faster
 * than it must (`rule` says what that means for this curve), null when it could not be judged.
 */
export interface Curve {
  key: string
  label: string
  sizeLabel: string
  unit: string
  points: CurvePoint[]
  rule: string
  flag: boolean | null
}

export interface Results {
  figures: Figure[]
  curves: Curve[]
  details: Record<string, unknown>
  notes: string[]
}

export interface BenchContext {
  profile: Profile
  system: System
  sim: Simulator
  teardowns: Teardowns
  results: Results
  /** Extra processes whose memory is reported (the minimal proxy). */
  extraProcs: Map<string, ChildProcess>
  /** Users made during setup (registered, logged in, recharged through the gateway). */
  users: BenchUser[]
  pinned: boolean
  log: (line: string) => void
}

export const met = (f: Figure): boolean | null => {
  if (!f.target || f.value === null) return null
  const { op, value } = f.target
  return op === '>=' ? f.value >= value : op === '<=' ? f.value <= value : f.value < value
}
