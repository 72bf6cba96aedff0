// The checker's critical section, shared by its lock and leader workloads: read a counter, wait a little, write
// it + 1 through the holder's fencedTxn(), and again unfenced as the control. Returns the operation's record.
// Times are compared across processes: the wall clock, read the same way by every process. Not
// performance.timeOrigin + performance.now(): each process samples its origin at start-up, and a worker spawned on a
// loaded machine can be off by 50-100 ms for its whole life (seen: every "overlap" of a busy run had a respawned
// worker as its earlier holder, while the data showed each holder reading the previous one's write).
const now = () => Date.now();

/**
 * `holder`: a Lock or a Leadership (both have fencedTxn()); `lostError`: the name of the error its fence throws.
 * Outcome — ok: etcd applied the fenced write; rejected: the fence failed (not applied); unknown: no answer (may be).
 */
export async function counterSection(client, [fencedKey, unfencedKey], holder, lostError) {
  const start = now();
  let fencedRead = -1;
  let outcome = 'unknown';
  let unfenced = false;
  let sent = start;
  try {
    fencedRead = Number((await client.get(fencedKey).string()) ?? '0');
    const unfencedRead = Number((await client.get(unfencedKey).string()) ?? '0');
    await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 18));
    sent = now();
    try {
      await holder
        .fencedTxn()
        .put(fencedKey, String(fencedRead + 1))
        .commit();
      outcome = 'ok';
    } catch (err) {
      outcome = err.name === lostError ? 'rejected' : 'unknown';
    }
    try {
      await client.put(unfencedKey).value(String(unfencedRead + 1));
      unfenced = true;
    } catch {}
  } catch {
    outcome = 'rejected'; // a read failed: no write was attempted
  }
  return { token: holder.fencingToken.toString(), start, end: sent, ok: outcome === 'ok', outcome, fencedRead, unfenced };
}
