// Prompt building: the system prompt, as much recent history as fits the token budget, then the new message.
import type { PromptMessage, Tokenizer } from './llm/tokenizer.ts'

export interface BuiltPrompt {
  messages: PromptMessage[]
  /** Prompt tokens by the local tokenizer (the estimate when the provider reports no usage). */
  tokens: number
  /** How many history messages were included. */
  historyUsed: number
}

/**
 * `historyNewestFirst` holds earlier turns, newest first. Turns are added from the newest back and stop at
 * the first one that does not fit, so the model never sees a gap in the conversation. The system prompt and
 * the new message are always sent, even if together they exceed the budget.
 */
export function buildPrompt (input: { systemPrompt: string, historyNewestFirst: { role: 'user' | 'assistant', content: string, content_tokens: number }[], content: string, budget: number, tokenizer: Tokenizer }): BuiltPrompt {
  const { tokenizer } = input
  const system: PromptMessage[] = input.systemPrompt ? [{ role: 'system', content: input.systemPrompt }] : []
  const current: PromptMessage = { role: 'user', content: input.content }
  let tokens = tokenizer.countPrompt([...system, current])
  const history: PromptMessage[] = []
  for (const m of input.historyNewestFirst) {
    // Stored counts: re-tokenizing up to 100 long messages on every exchange would cost seconds.
    const cost = tokenizer.countMessage({ role: m.role, content: '' }) + m.content_tokens
    if (tokens + cost > input.budget) break
    tokens += cost
    history.push({ role: m.role, content: m.content })
  }
  history.reverse()
  return { messages: [...system, ...history, current], tokens, historyUsed: history.length }
}
