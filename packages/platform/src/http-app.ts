// The Fastify instance every process starts from: logger, request ids, body limit, validation, problem errors.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { loggerOptions } from './logger.ts'
import { validatorCompiler } from './validation.ts'
import { errorHandlerPlugin, frameworkErrors } from './error-handler.ts'
import { ProblemError } from './errors.ts'
import { protectInternalRoutes, recordInternalRoutes } from './internal-auth.ts'
import { setInternalToken } from './http-client.ts'

export const BODY_LIMIT = 1024 * 1024
/** Bodies declared larger than BODY_LIMIT but at most this are read and dropped before the 413. */
const DRAIN_LIMIT = 16 * 1024 * 1024
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export interface HttpAppOptions {
  service: string
  logLevel: string
  /** Extra Fastify options (tests pass `logger: false` through logLevel 'silent'). */
  fastify?: FastifyServerOptions
  /**
   * INTERNAL_TOKEN of a service: its /internal/ routes require it and its internal calls carry it. Services pass
   * the key even when the value is unset (open, in development); the gateway serves no internal route and omits it.
   */
  internalToken?: string
}

type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'
interface PinoLike {
  child: (bindings: object, opts?: object) => PinoLike
  level: string
  levels: { values: Record<string, number> }
  isLevelEnabled: (level: string) => boolean
  bindings: () => object
  [level: string]: unknown
}

/**
 * The request's logger, made only when something is logged at an enabled level. Fastify makes a child logger
 * per request, and pino's child (bindings serialized through the redaction paths) cost a few percent of a proxied
 * request's CPU; most requests log nothing.
 */
class LazyChildLogger {
  readonly #parent: PinoLike
  readonly #bindings: object
  readonly #opts: { level?: string }
  #real: PinoLike | undefined

  constructor (parent: PinoLike, bindings: object, opts: { level?: string }) {
    this.#parent = parent
    this.#bindings = bindings
    this.#opts = opts
  }

  #get (): PinoLike { return (this.#real ??= this.#parent.child(this.#bindings, this.#opts)) }
  #log (level: LogLevel, args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return
    (this.#get()[level] as (...a: unknown[]) => void)(...args)
  }

  get level (): string { return this.#real?.level ?? this.#opts.level ?? this.#parent.level }
  set level (value: string) { this.#get().level = value }
  #threshold: number | undefined
  isLevelEnabled (level: string): boolean {
    if (this.#real) return this.#real.isLevelEnabled(level)
    const { values } = this.#parent.levels
    // The parent's level is read once per request (pino's getter is not free).
    this.#threshold ??= values[this.#opts.level ?? this.#parent.level]
    return values[level] >= this.#threshold
  }

  bindings (): object { return this.#get().bindings() }
  child (bindings: object, opts?: object): PinoLike { return this.#get().child(bindings, opts) }
  trace (...args: unknown[]): void { this.#log('trace', args) }
  debug (...args: unknown[]): void { this.#log('debug', args) }
  info (...args: unknown[]): void { this.#log('info', args) }
  warn (...args: unknown[]): void { this.#log('warn', args) }
  error (...args: unknown[]): void { this.#log('error', args) }
  fatal (...args: unknown[]): void { this.#log('fatal', args) }
  silent (): void {}
}

export function createHttpApp (opts: HttpAppOptions) {
  const app = Fastify({
    logger: loggerOptions(opts.service, opts.logLevel),
    bodyLimit: BODY_LIMIT,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    childLoggerFactory: (logger, bindings, childOpts) => new LazyChildLogger(logger as never, bindings, childOpts) as never,
    forceCloseConnections: false,
    return503OnClosing: true,
    // A malformed percent-encoding is refused by the router before any hook: answered as a problem too.
    frameworkErrors,
    ...opts.fastify
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(validatorCompiler())
  if (Object.hasOwn(opts, 'internalToken')) {
    recordInternalRoutes(app)
    protectInternalRoutes(app, opts.internalToken)
    setInternalToken(opts.internalToken)
  }
  // An empty body sent with a JSON content type is no body (the mini-program's wx.request sends that header on every
  // method, DELETE and GET included): it parses as `{}`, which is what an optional body means. Anything else goes
  // through Fastify's own parser (prototype-poisoning checks included).
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body)
    if (text.trim() === '') return done(null, {})
    parseJson(request, text, done)
  })
  // One callback-style hook for every request (the cheapest kind): the request id on the answer, and oversized bodies.
  // Fastify answers an oversized Content-Length at once and closes the socket while the client is still
  // sending, which most clients see as EPIPE/ECONNRESET instead of the 413. Reading (and dropping) the
  // body first lets the client finish writing and read our problem+json; beyond DRAIN_LIMIT we don't.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    const length = Number(request.headers['content-length'])
    if (!(length > BODY_LIMIT)) return done()
    const tooLarge = () => done(new ProblemError('payload_too_large', 'The request body is larger than 1 MiB.'))
    if (length > DRAIN_LIMIT) return tooLarge()
    let finished = false
    const finish = () => { if (!finished) { finished = true; tooLarge() } }
    request.raw.on('data', () => {})
    request.raw.once('end', finish)
    request.raw.once('error', finish)
    request.raw.once('close', finish)
  })
  closeKeptAliveOnShutdown(app)
  app.register(errorHandlerPlugin)
  return app
}

/**
 * Shutdown must not wait for keep-alive clients (the gateway's undici pool keeps an idle socket ~71 s, as our
 * Keep-Alive: timeout=72 invites). server.close() (Node >= 19) closes only the sockets idle at that moment: a socket
 * whose request was in flight went back to the pool afterwards and held close until close-with-grace gave up (exit 1).
 * Once close() began, every answer says Connection: close (Node ends the socket after it), and a socket whose answer
 * was already on its way when close began is closed as soon as it is idle.
 */
function closeKeptAliveOnShutdown (app: FastifyInstance): void {
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing && request.raw.httpVersionMajor === 1 && !reply.raw.headersSent) reply.header('connection', 'close')
    done(null, payload)
  })
  app.addHook('onResponse', (request, reply, done) => {
    if (closing) setImmediate(() => app.server.closeIdleConnections())
    done()
  })
}

export type HttpApp = ReturnType<typeof createHttpApp>
export type AnyApp = FastifyInstance
