/**
 * Characters that change how text is shown rather than show themselves: C0 and C1 controls (escape sequences,
 * carriage return), DEL, and the bidirectional marks, overrides and isolates (which reorder what follows them).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is this regex's purpose.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function hex(c: string): string {
  return (c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
}

/** The first character of `s` that a terminal would not show as itself, as `U+XXXX`, if any. */
export function unprintableIn(s: string): string | undefined {
  UNPRINTABLE.lastIndex = 0;
  const match = UNPRINTABLE.exec(s);
  return match ? `U+${hex(match[0])}` : undefined;
}

/** `s` with every such character written as `\u{XXXX}`: what a name or value shows in a terminal. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u{${hex(c)}}`);
}

/** Those that `JSON.stringify` leaves as they are (it escapes C0 controls in strings; its own layout uses '\n'). */
const UNPRINTABLE_IN_JSON = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** JSON text (from `JSON.stringify`) with every such character in its strings escaped: the same document, safe to print. */
export function printableJson(json: string): string {
  return json.replace(UNPRINTABLE_IN_JSON, (c) => `\\u${hex(c)}`);
}
