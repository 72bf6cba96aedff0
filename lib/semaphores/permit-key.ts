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
