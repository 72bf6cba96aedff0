/**
 * A permit's key: `<prefix>semaphore/<name>/<lease hex>-<n>-of-<limit>`. One key per permit (an instance may hold
 * several), and the limit it was taken with is part of its name, so a join that finds an older key with another
 * limit refuses without reading any value.
 */
export function permitKeyName(sequence: number, limit: number): (leaseHex: string) => string {
  return (leaseHex) => `${leaseHex}-${sequence}-of-${limit}`;
}

/** The limit named by a permit key, or undefined for a key not in this layout. */
export function limitOfKey(key: string): number | undefined {
  const match = /-\d+-of-(\d+)$/.exec(key);
  return match ? Number(match[1]) : undefined;
}

/**
 * The sequence numbers of an instance's permits in use, by semaphore name: a new permit takes the smallest free
 * one, so an instance that takes and lets go of permits puts the same keys again (their watches, here and at the
 * waiters behind, are reused as a lock's are), and a number is free again only once its key was deleted.
 */
export class PermitSequences {
  private readonly inUse = new Map<string, Set<number>>();

  take(name: string): number {
    let used = this.inUse.get(name);
    if (!used) {
      used = new Set();
      this.inUse.set(name, used);
    }
    let n = 1;
    while (used.has(n)) n++;
    used.add(n);
    return n;
  }

  give(name: string, n: number): void {
    const used = this.inUse.get(name);
    used?.delete(n);
    if (used?.size === 0) this.inUse.delete(name);
  }
}
