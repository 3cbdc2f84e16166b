// Child processes of tests and the coverage report. tap measures coverage through @tapjs/processinfo, which every
// child inherits through NODE_OPTIONS, and its report (c8) merges all processes' V8 coverage of a file by byte
// offsets in that file's transpiled code, taking the source map of whichever process it read last: a source
// transpiled two ways (or a bundle's coverage mapped back onto it) makes nonsense of the figures. So there is one
// way to run TypeScript sources: tap's loader, in the test processes and in every child that runs sources
// (`typescriptArgs`). Everything else runs the bundles of scripts/build.mjs (`pnpm start`, `pnpm ops`, the images,
// the bench, e2e's `dist` runtime), which never count: the tap config in package.json excludes every dist/ from
// coverage (`coverage-exclude`), and scripts/test.mjs builds them before a full run so that the exclusion sees them.

/** The loader of tap's TypeScript plugin in this process's arguments, when running under tap. */
const TAP_TS_LOADER = process.execArgv.find((a) => a.startsWith('--import=') && a.includes('@tapjs/typescript'))

/**
 * Node arguments that load TypeScript the way this test process does (tap's loader). Only under tap: outside the
 * tests, processes run the bundles (scripts/build.mjs), never the sources through another loader.
 */
export function typescriptArgs (): string[] {
  if (TAP_TS_LOADER === undefined) throw new Error('typescriptArgs() is for children of tap\'s test processes; elsewhere run the bundles (node scripts/build.mjs)')
  return [TAP_TS_LOADER]
}

/**
 * `env` for a child whose coverage does not count (a bundle, a command), to spare it the recording: tap's hook
 * re-enters every child (it wraps spawn and puts itself back into NODE_OPTIONS), but it records no coverage
 * where `_TAPJS_PROCESSINFO_COVERAGE_` is 0.
 */
export function withoutCoverage (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  delete out.NODE_V8_COVERAGE
  return out
}
