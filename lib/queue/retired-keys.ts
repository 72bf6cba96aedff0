import type { LeaseSession } from '../session/lease-session.js';

/**
 * Names under which a lease must not put its key again. A release is a plain delete of `<name prefix><lease
 * hex>`: only this instance creates that key, one caller at a time, so the delete can only reach the key of the
 * caller that sends it. Once such a delete goes unanswered it may still be applied later, after the next caller
 * here put the same key: from then on, keys of this lease under that name get a suffix (`<lease hex>.<n>`),
 * which the late delete cannot reach.
 */
const retired = new WeakMap<LeaseSession, Map<string, number>>();

/** The lease's part of a key name under `namePrefix`: its hex, suffixed once a delete there went unanswered. */
export function keyTag(session: LeaseSession, namePrefix: string): string {
  const generation = retired.get(session)?.get(namePrefix);
  return generation === undefined ? session.hex : `${session.hex}.${generation}`;
}

/** A delete of the key `keyTag(session, namePrefix)` went unanswered: the next key there gets another name. */
export function retireKey(session: LeaseSession, namePrefix: string): void {
  let names = retired.get(session);
  if (!names) {
    names = new Map();
    retired.set(session, names);
  }
  names.set(namePrefix, (names.get(namePrefix) ?? 0) + 1);
}
