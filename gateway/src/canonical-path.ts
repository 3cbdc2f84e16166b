// The one canonicalisation step of the edge: a request path is routed (zone and upstream) only if it is already canonical.

/** The path is canonical: it is routed and forwarded byte for byte. */
export const CANONICAL = 0
/** Not canonical (dot segment, empty segment, trailing slash, escaped ASCII, a character outside the set): 404, never proxied. */
export const NOT_CANONICAL = 1
/** A `%` not followed by two hex digits: 400 validation_failed. */
export const BAD_ESCAPE = 2
export type PathVerdict = typeof CANONICAL | typeof NOT_CANONICAL | typeof BAD_ESCAPE

const SLASH = 47
const DOT = 46
const PERCENT = 37
const QUERY = 63

/**
 * The characters a canonical path may hold as they are: RFC 3986 `pchar` (unreserved, sub-delims, `:`, `@`) and
 * `/`, less `;` (matrix parameters, read as a delimiter by some servers). Left out as well: `\` (a WHATWG URL parser
 * turns it into `/`), `#`, space, quotes, `<>[]^{|}` and backquote (percent-encoded or cut by the URL parser), controls,
 * and anything beyond ASCII (the URL parser percent-encodes it). So none of these can change between the path the
 * gateway classifies and the one undici sends.
 */
const PLAIN = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&\'()*+,=:@/') PLAIN[c.charCodeAt(0)] = 1

/** Hex digit value + 1 (0: not a hex digit), for both cases. */
const HEX = new Uint8Array(128)
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i + 1
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i + 1
}

/**
 * Whether the path of `url` (up to `?`; the query string is not looked at) is canonical. Canonical means: it starts
 * with `/`; no `.` segment and no two dots in a row (so no `..` segment); no empty segment (`//`); no trailing slash under `/api/`; only the characters of
 * PLAIN; and a percent-escape only for a byte beyond ASCII (UTF-8 text). An escaped ASCII byte is never canonical:
 * `%2e` is a dot (unreserved bytes are written plain), `%2F` an encoded slash, `%25` double encoding, `%5C` a
 * backslash, `%3B` a matrix delimiter. Upper or lower case hex alike: they decode to the same byte, and the escape
 * is forwarded as written. The invalid UTF-8 of a valid escape is refused by the router before this runs.
 *
 * One pass, no regex, no allocation: it runs on every request.
 */
export function checkPath (url: string): PathVerdict {
  const length = url.length
  if (length === 0 || url.charCodeAt(0) !== SLASH) return NOT_CANONICAL
  let segmentStart = 1
  let i = 1
  for (; i < length; i++) {
    const c = url.charCodeAt(i)
    if (c === SLASH) {
      // An empty segment, or a segment that is one dot.
      if (i === segmentStart || (i === segmentStart + 1 && url.charCodeAt(segmentStart) === DOT)) return NOT_CANONICAL
      segmentStart = i + 1
    } else if (c === DOT) {
      // Two dots in a row, anywhere: `..` segments, and also `...`, `/..x`, `x../` (which @fastify/reply-from refuses).
      if (url.charCodeAt(i - 1) === DOT) return NOT_CANONICAL
    } else if (c === PERCENT) {
      const high = i + 1 < length ? url.charCodeAt(i + 1) : 0
      const low = i + 2 < length ? url.charCodeAt(i + 2) : 0
      if (high >= 128 || low >= 128 || HEX[high] === 0 || HEX[low] === 0) return BAD_ESCAPE
      // An escaped byte below 0x80 is an ASCII character: written plain when canonical, or not ours to route.
      if (HEX[high] - 1 < 8) return NOT_CANONICAL
      i += 2
    } else if (c === QUERY) {
      break
    } else if (c >= 128 || PLAIN[c] === 0) {
      return NOT_CANONICAL
    }
  }
  // The last segment: `/` alone is the root; a trailing slash elsewhere is an empty segment on an API route.
  if (i === segmentStart) return i === 1 || !url.startsWith('/api/') ? CANONICAL : NOT_CANONICAL
  return i === segmentStart + 1 && url.charCodeAt(segmentStart) === DOT ? NOT_CANONICAL : CANONICAL
}
