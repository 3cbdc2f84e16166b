// Queries on dead_letters: events set aside because they can never be applied.
import { sql, type Kysely } from 'kysely'
import type { Database } from '../database.ts'

export interface NewDeadLetter { stream: string, stream_seq: number | null, subject: string, payload: string, error: string }

/** Stores set-aside events; the same stream message set aside twice is kept once. */
export async function insertDeadLetters (db: Kysely<Database>, letters: NewDeadLetter[]): Promise<void> {
  if (letters.length === 0) return
  await sql`
    insert into dead_letters (stream, stream_seq, subject, payload, error)
    select * from unnest(${letters.map((l) => l.stream)}::text[], ${letters.map((l) => l.stream_seq)}::bigint[],
      ${letters.map((l) => l.subject)}::text[], ${letters.map((l) => l.payload)}::text[], ${letters.map((l) => l.error)}::text[])
    on conflict (stream, stream_seq) where stream_seq is not null do nothing`.execute(db)
}
