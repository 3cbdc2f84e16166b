// Child processes and the coverage report. tap measures coverage through @tapjs/processinfo, which every child
// inherits through NODE_OPTIONS, and its report (c8) merges all processes' V8 coverage of a file by byte offsets
// in that file's transpiled code, taking the source map of whichever process it read last. Test processes
// transpile with tap's loader (ts-node); a child transpiling the same .ts file another way (tsx prints it on three
// lines, a bundle has other function boundaries) merges nonsense into the report, different on every run (the
// functions figure swung between 86 % and 93 % on one commit). So a TypeScript child runs through tap's own
// loader (`typescriptArgs`), and a child that runs the same sources another way runs without coverage
// (`withoutCoverage`). Outside tap both are plain: tsx, and the environment unchanged.

/** The loader of tap's TypeScript plugin in this process's arguments, when running under tap. */
const TAP_TS_LOADER = process.execArgv.find((a) => a.startsWith('--import=') && a.includes('@tapjs/typescript'))
const TSX = new URL('../../../../node_modules/tsx/dist/loader.mjs', import.meta.url).href

/** Node arguments that load TypeScript the way this (test) process does: tap's loader under tap, else tsx. */
export function typescriptArgs (): string[] {
  return [TAP_TS_LOADER ?? `--import=${TSX}`]
}

/**
 * `env` for a child whose coverage must not count. tap's hook re-enters every child (it wraps spawn and puts
 * itself back into NODE_OPTIONS), but it records no coverage where `_TAPJS_PROCESSINFO_COVERAGE_` is 0.
 */
export function withoutCoverage (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  delete out.NODE_V8_COVERAGE
  return out
}
