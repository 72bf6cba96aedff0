import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { EtcdProcess, freePort, scratchDir } from './etcd.js';

/** A 3-member etcd cluster on loopback: kill, pause, restart or wipe any member; find the raft leader. */
export class EtcdCluster {
  private constructor(
    readonly members: EtcdProcess[],
    private readonly root: string,
  ) {}

  static async start(size = 3): Promise<EtcdCluster> {
    const root = mkdtempSync(join(scratchDir(), 'etcd-cluster-'));
    const ports = await Promise.all(Array.from({ length: size }, async () => [await freePort(), await freePort()]));
    const initialCluster = ports.map(([, peer], i) => `m${i}=http://127.0.0.1:${peer}`).join(',');
    const members = ports.map(
      ([client, peer], i) =>
        new EtcdProcess({
          name: `m${i}`,
          clientPort: client,
          peerPort: peer,
          dataDir: join(root, `m${i}`),
          initialCluster,
          initialState: 'new',
          // Faster failure detection than the defaults (100/1000 ms), still stable on a loaded CI machine.
          extraArgs: ['--heartbeat-interval', '50', '--election-timeout', '500'],
        }),
    );
    const cluster = new EtcdCluster(members, root);
    try {
      await Promise.all(members.map((m) => m.start()));
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  /** All client endpoints, for `hosts`. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** The member that leads raft now (asks each running member). */
  async leader(): Promise<EtcdProcess> {
    for (;;) {
      for (const member of this.members.filter((m) => m.running)) {
        const client = new Etcd3({ hosts: member.endpoint });
        try {
          const status = await client.maintenance.status({ deadline: Date.now() + 1000 });
          // A member whose own id is the leader id it reports leads.
          if (status.leader !== '0' && status.header.member_id === status.leader) return member;
        } catch {
          // not answering: try the next member
        } finally {
          client.close();
        }
      }
      // A leader election is under way: ask again once it has had time to finish (one election timeout).
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The running members other than `member`. */
  others(member: EtcdProcess): EtcdProcess[] {
    return this.members.filter((m) => m !== member && m.running);
  }

  /** Restarts a stopped member with its data (it rejoins the cluster). */
  async restart(member: EtcdProcess): Promise<void> {
    member.spec.initialState = 'existing';
    await member.start();
  }

  /** Stops every member, deletes all data, and starts the cluster anew on the same addresses. */
  async wipe(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop('SIGKILL')));
    for (const member of this.members) {
      rmSync(member.spec.dataDir, { recursive: true, force: true });
      member.spec.initialState = 'new';
    }
    await Promise.all(this.members.map((m) => m.start()));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop('SIGKILL')));
    rmSync(this.root, { recursive: true, force: true });
  }
}
