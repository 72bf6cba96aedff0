import { LocalQueue } from '../../lib/queue/local-queue.js';

describe('LocalQueue (callers of one name in this process take turns)', () => {
  it('serves waiters in order; one that gives up leaves the line, and the next is served', async () => {
    const queue = new LocalQueue();
    const first = queue.tryEnter('x');
    expect(first).toBeDefined();
    expect(queue.tryEnter('x')).toBeUndefined();
    const quitter = new AbortController();
    const order: string[] = [];
    const gaveUp = queue.enter('x', quitter.signal).catch((reason: unknown) => order.push(`gave up: ${reason}`));
    const second = queue.enter('x').then((exit) => {
      order.push('second in');
      return exit;
    });
    quitter.abort('enough');
    await gaveUp;
    first?.exit();
    const secondSlot = await second;
    // A turn given back twice gives nothing more: the second caller keeps the name.
    first?.exit();
    expect(queue.tryEnter('x')).toBeUndefined();
    secondSlot.exit();
    expect(order).toEqual(['gave up: enough', 'second in']);
    // Everyone left: the name is free again.
    const again = queue.tryEnter('x');
    expect(again).toBeDefined();
    again?.exit();
  });

  it('rejects at once with an aborted signal while the name is taken, and resolves at once when free', async () => {
    const queue = new LocalQueue();
    const holder = queue.tryEnter('y');
    await expect(queue.enter('y', AbortSignal.abort('no'))).rejects.toBe('no');
    holder?.exit();
    const slot = await queue.enter('y', AbortSignal.abort('free anyway'));
    slot.exit();
  });
});
