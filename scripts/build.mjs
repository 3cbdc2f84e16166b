// `node scripts/build.mjs [gateway auth chat billing ops] [--root <dir>] [--quiet]`: bundles each process's TypeScript
// (our workspace code only; every npm package stays an import resolved from node_modules) into <dir>/dist/ for plain node.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import * as esbuild from 'esbuild'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What each process bundles, relative to the repository root (or `--root`, which mirrors its layout). */
export const TARGETS = {
  gateway: { dir: 'gateway', entry: 'src/server.ts', out: 'dist/server.mjs' },
  auth: { dir: 'services/auth', entry: 'src/server.ts', out: 'dist/server.mjs' },
  chat: { dir: 'services/chat', entry: 'src/server.ts', out: 'dist/server.mjs' },
  billing: { dir: 'services/billing', entry: 'src/server.ts', out: 'dist/server.mjs' },
  ops: { dir: 'ops', entry: 'cli.ts', out: 'dist/cli.mjs' }
}
export const PROCESSES = ['gateway', 'auth', 'chat', 'billing']

const BUILTINS = new Set(builtinModules)
const SKIP = Symbol('resolve as esbuild would')
const HELPER = '__chatPlatformFileURLToPath'

/** A relative import specifier from the bundle's directory to a file. */
const relativeSpecifier = (fromDir, file) => {
  const rel = relative(fromDir, file).split(sep).map(encodeURIComponent).join('/')
  return rel.startsWith('.') ? rel : `./${rel}`
}

/**
 * npm packages stay external. A bare import keeps its name when node resolves it from the bundle to the same file
 * as from the importing file; otherwise (a dependency of @chat-platform/platform the process does not declare
 * itself, or another version of it) it becomes a relative path to the file the importing package would load.
 */
function externals (pkgDir, outDir) {
  return {
    name: 'externals',
    setup (build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === SKIP || args.path.startsWith('@chat-platform/')) return undefined
        if (args.path.startsWith('node:') || BUILTINS.has(args.path)) return { path: args.path, external: true }
        const opts = { kind: args.kind, pluginData: SKIP }
        const fromImporter = await build.resolve(args.path, { ...opts, resolveDir: args.resolveDir })
        if (fromImporter.errors.length) return { errors: fromImporter.errors }
        // Not a package (e.g. a `#subpath` import of our own code): bundle it.
        if (!fromImporter.path.split(sep).includes('node_modules')) return { path: fromImporter.path }
        const fromBundle = await build.resolve(args.path, { ...opts, resolveDir: pkgDir })
        if (!fromBundle.errors.length && fromBundle.path === fromImporter.path) return { path: args.path, external: true }
        return { path: relativeSpecifier(outDir, fromImporter.path), external: true }
      })
    }
  }
}

/**
 * `import.meta` in a bundled module (other than the entry) means the bundle, not the source file: rewrite url,
 * filename and dirname to the source file's location, relative to the bundle so the tree can move as a whole
 * (packages/platform/src/keys.ts finds the repository's .keys/ that way).
 */
function sourceImportMeta (entry, outDir) {
  return {
    name: 'source-import-meta',
    setup (build) {
      build.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
        if (args.path === entry) return undefined
        const source = readFileSync(args.path, 'utf8')
        if (!source.includes('import.meta.')) return undefined
        const url = (p) => `new URL(${JSON.stringify(relativeSpecifier(outDir, p))}, import.meta.url)`
        const contents = source.replace(/\bimport\.meta\.(url|filename|dirname)\b/g, (_, prop) =>
          prop === 'url' ? `${url(args.path)}.href` : `${HELPER}(${url(prop === 'filename' ? args.path : dirname(args.path))})`)
        return { contents, loader: /ts$/.test(args.path) ? 'ts' : 'js', resolveDir: dirname(args.path) }
      })
    }
  }
}

/** Writes a file only if its content changed, through a rename: a process starting meanwhile reads the old or the new one whole. */
function writeAtomically (path, contents) {
  try { if (readFileSync(path).equals(contents)) return false } catch { /* not there yet */ }
  mkdirSync(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, contents)
  renameSync(tmp, path)
  return true
}

/** Builds one target; returns what it wrote. */
export async function buildTarget (name, { root = ROOT } = {}) {
  const target = TARGETS[name]
  if (!target) throw new Error(`unknown build target ${name} (one of ${Object.keys(TARGETS).join(', ')})`)
  const started = performance.now()
  const pkgDir = resolve(root, target.dir)
  const entry = join(pkgDir, target.entry)
  const outfile = join(pkgDir, target.out)
  const outDir = dirname(outfile)
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    absWorkingDir: pkgDir,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // The repository's settings (verbatimModuleSyntax …) also for the deployed tree of the image build, which has no tsconfig.json.
    tsconfig: join(ROOT, 'tsconfig.json'),
    // Resolve like node: no `module` condition or field.
    conditions: [],
    mainFields: ['main'],
    sourcemap: 'linked',
    // No keepNames: it wraps every function created at run time (closures per request) in a defineProperty call.
    keepNames: false,
    banner: { js: `import { fileURLToPath as ${HELPER} } from 'node:url';` },
    plugins: [externals(pkgDir, outDir), sourceImportMeta(entry, outDir)],
    logLevel: 'silent',
    write: false
  })
  // The map first, so a bundle never points at a map older than itself.
  const files = [...result.outputFiles].sort((a, b) => Number(b.path.endsWith('.map')) - Number(a.path.endsWith('.map')))
  let changed = false
  for (const f of files) changed = writeAtomically(f.path, Buffer.from(f.contents)) || changed
  return { name, outfile, bytes: files.find((f) => f.path === outfile)?.contents.length ?? 0, changed, ms: performance.now() - started }
}

/** Builds several targets at once (default: the four processes). */
export async function build (names = PROCESSES, opts = {}) {
  try {
    return await Promise.all(names.map((n) => buildTarget(n, opts)))
  } finally {
    // esbuild's service process would otherwise live as long as `pnpm start`.
    await esbuild.stop()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { root: { type: 'string' }, quiet: { type: 'boolean', default: false } } })
  try {
    const root = values.root ? resolve(values.root) : ROOT
    for (const r of await build(positionals.length ? positionals : PROCESSES, { root })) {
      if (!values.quiet) process.stderr.write(`[build] ${relative(process.cwd(), r.outfile) || r.outfile} ${(r.bytes / 1024).toFixed(0)} kB${r.changed ? '' : ' (unchanged)'} in ${r.ms.toFixed(0)} ms\n`)
    }
  } catch (err) {
    // esbuild's own errors name the file, line and column already.
    process.stderr.write(`[build] failed: ${err.message}\n`)
    process.exitCode = 1
  }
}
