import { BehaviorSubject } from 'rxjs';
import { settleOnce } from '../../lib/util/settle-once.js';
import { onAbort } from '../../lib/util/wait-signal.js';

describe('settleOnce', () => {
  it('settles from a source that answers synchronously while it is registered, and cleans up once', async () => {
    const controller = new AbortController();
    const leadership = new BehaviorSubject(true);
    let cleanups = 0;
    const settled = new Promise<string>((resolve, reject) => {
      const settle = settleOnce(resolve, reject);
      settle.onEnd(() => cleanups++);
      settle.onEnd(onAbort(controller.signal, (reason) => settle.reject(reason)));
      // BehaviorSubject emits inside subscribe(): before `subscribe` returns, the promise is settled.
      settle.onEnd(leadership.subscribe((leader) => leader && settle.resolve('leads')));
      expect(settle.settled).toBe(true);
    });
    expect(await settled).toBe('leads');
    expect(cleanups).toBe(1);
    expect(leadership.observed).toBe(false);
    controller.abort(new Error('late'));
  });

  it('the first of several sources wins; later ones are ignored', async () => {
    const outcome = await new Promise<string>((resolve, reject) => {
      const settle = settleOnce(resolve, reject);
      settle.reject(new Error('first'));
      settle.resolve('second');
    }).catch((err: Error) => err.message);
    expect(outcome).toBe('first');
  });
});
