/**
 * MurmurHash3 (x86, 32-bit, seed as given) of the UTF-8 bytes of `text`: the one hash behind `shardOf` and the
 * rendezvous weights. Fixed forever: changing it would move every key to another shard between versions.
 */
export function murmur3(text: string, seed = 0): number {
  const bytes = Buffer.from(text, 'utf8');
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = bytes.length & 3;
  if (tail > 0) {
    let k = bytes[blocks];
    if (tail >= 2) k ^= bytes[blocks + 1] << 8;
    if (tail === 3) k ^= bytes[blocks + 2] << 16;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The shard of `key` among `shards`: `murmur3(key, seed 0) mod shards`, the same on every replica and version. */
export function shardOf(key: string, shards: number): number {
  return murmur3(key) % shards;
}

/** How much `member` wants `shard` (rendezvous hashing): higher wins; ties broken by the member id. */
export function weight(shard: number, member: string): number {
  return murmur3(member, shard);
}
