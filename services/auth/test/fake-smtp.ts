// A real SMTP server on loopback (the smtp-server package) that keeps what it received, for reading the codes auth mails.
import { SMTPServer } from 'smtp-server'
import type { AddressInfo } from 'node:net'

export interface Teardown { teardown: (fn: () => unknown) => void }

export interface ReceivedMail { from: string, to: string[], raw: string, user?: string }

export interface FakeSmtp {
  url: string
  port: number
  mails: ReceivedMail[]
  /** The mails to `to`, oldest first. */
  to: (address: string) => ReceivedMail[]
  /** The 6-digit code of the newest mail to `to`. */
  lastCode: (address: string) => string | undefined
  close: () => Promise<void>
}

/** Without credentials, or requiring `user`/`pass` (AUTH PLAIN/LOGIN over plain TCP: loopback only). */
export async function startFakeSmtp (t: Teardown, opts: { user?: string, pass?: string } = {}): Promise<FakeSmtp> {
  const mails: ReceivedMail[] = []
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    authOptional: opts.user === undefined,
    allowInsecureAuth: true,
    logger: false,
    onAuth (auth, _session, cb) {
      if (auth.username === opts.user && auth.password === opts.pass) cb(null, { user: auth.username })
      else cb(new Error('invalid credentials'))
    },
    onData (stream, session, cb) {
      let raw = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => { raw += chunk })
      stream.on('end', () => {
        mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw, user: session.user as string | undefined })
        cb()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.server.address() as AddressInfo).port
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()))
  t.teardown(close)
  const auth = opts.user !== undefined ? `${encodeURIComponent(opts.user)}:${encodeURIComponent(opts.pass ?? '')}@` : ''
  const to = (address: string) => mails.filter((m) => m.to.includes(address))
  return {
    url: `smtp://${auth}127.0.0.1:${port}`,
    port,
    mails,
    to,
    lastCode (address) {
      const mine = to(address)
      // Quoted-printable or base64 bodies: decode what nodemailer may have encoded before looking for the digits.
      const last = mine[mine.length - 1]
      if (!last) return undefined
      return /(?:验证码|code)[^0-9]{0,40}([0-9]{6})/i.exec(decodeBody(last.raw))?.[1]
    },
    close
  }
}

function decodeBody (raw: string): string {
  const [head, ...rest] = raw.split(/\r?\n\r?\n/)
  const body = rest.join('\n\n')
  if (/content-transfer-encoding:\s*base64/i.test(head)) return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (/content-transfer-encoding:\s*quoted-printable/i.test(head)) {
    const bytes = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
    return Buffer.from(bytes, 'latin1').toString('utf8')
  }
  return body
}
