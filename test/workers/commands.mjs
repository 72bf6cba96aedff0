// The checker workers' commands on stdin, one a line:
// - `quiesce`: start no new operation, let go of every hold (release, resign, leave), then print
//   {"quiesced":true,"lease":"<hex>"} and keep the app (and its lease) alive: what is left in etcd on that lease
//   after this is stranded;
// - `stop`: the same, then close the app and exit.
import { EtcdSessionService } from '../../dist/index.js';

/** `letGo()` ends the workload's loop and lets go of its holds; `close()` closes the app. Both run once. */
export function onCommands(app, { letGo, close }) {
  let released;
  const quiesce = () => {
    released ??= letGo().then(() => {
      const { leaseId } = app.get(EtcdSessionService).status();
      process.stdout.write(`${JSON.stringify({ quiesced: true, lease: leaseId })}\n`);
    });
    return released;
  };
  let buffer = '';
  process.stdin.on('data', (chunk) => {
    buffer += chunk.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === 'quiesce') void quiesce();
      if (line.trim() === 'stop') {
        process.stdin.destroy();
        void quiesce().then(close);
      }
    }
  });
}
