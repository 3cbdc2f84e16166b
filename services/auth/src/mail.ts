// Mail for codes: SMTP through nodemailer (MAIL_URL), a development mailbox when it is unset outside production, nothing in production without it.
import nodemailer, { type Transporter } from 'nodemailer'
import type { Logger } from 'pino'
import type { AuthConfig } from './config.ts'

export interface Mail { to: string, subject: string, text: string }
export interface StoredMail extends Mail { sent_at: string }

/** The development mailbox: the last mails "sent", readable through GET /internal/dev-mailbox (never in production). */
export class DevMailbox {
  private readonly mails: StoredMail[] = []
  private readonly max: number
  constructor (max = 1000) { this.max = max }
  add (mail: Mail): void {
    this.mails.push({ ...mail, sent_at: new Date().toISOString() })
    if (this.mails.length > this.max) this.mails.shift()
  }

  /** Newest first; only `to`'s when given. */
  list (to?: string): StoredMail[] {
    return this.mails.filter((m) => to === undefined || m.to === to).reverse()
  }
}

export interface Mailer {
  /** smtp: MAIL_URL; dev: logged and kept in the development mailbox; off: production without MAIL_URL (routes answer 503). */
  readonly mode: 'smtp' | 'dev' | 'off'
  readonly devMailbox?: DevMailbox
  send: (mail: Mail) => Promise<void>
  close: () => void
}

export function createMailer (config: Pick<AuthConfig, 'MAIL_URL' | 'MAIL_FROM' | 'MAIL_TIMEOUT_MS' | 'NODE_ENV'>, log: Logger): Mailer {
  if (config.MAIL_URL) {
    // smtp:// upgrades with STARTTLS when the server offers it; smtps:// is TLS from the start (port 465).
    const transport: Transporter = nodemailer.createTransport({
      url: config.MAIL_URL,
      connectionTimeout: config.MAIL_TIMEOUT_MS,
      greetingTimeout: config.MAIL_TIMEOUT_MS,
      socketTimeout: config.MAIL_TIMEOUT_MS
    }, { from: config.MAIL_FROM })
    return {
      mode: 'smtp',
      async send (mail) { await transport.sendMail({ to: mail.to, subject: mail.subject, text: mail.text }) },
      close () { transport.close() }
    }
  }
  if (config.NODE_ENV === 'production') {
    return { mode: 'off', async send () { throw new Error('MAIL_URL is not set') }, close () {} }
  }
  const devMailbox = new DevMailbox()
  log.warn({ mail: 'dev-mailbox' }, 'MAIL_URL is not set: mails are logged and kept in the development mailbox (GET /internal/dev-mailbox?to=)')
  return {
    mode: 'dev',
    devMailbox,
    async send (mail) {
      devMailbox.add(mail)
      log.info({ mail: { to: mail.to, subject: mail.subject, text: mail.text } }, 'development mailbox: mail not sent')
    },
    close () {}
  }
}
