import { type AddressInfo, createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy on loopback between a client and etcd that can cut traffic off: while cut, bytes in both
 * directions are held back (connections stay open, as in a network partition, not refused).
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private isCut = false;
  /** While cut: drop the client's stream resets instead of holding them (see `stall`). */
  private dropResets = false;

  private constructor(private readonly target: { host: string; port: number }) {}

  static async start(targetEndpoint: string): Promise<TcpProxy> {
    const url = new URL(targetEndpoint);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.listen();
    return proxy;
  }

  get endpoint(): string {
    if (!this.server) throw new Error('proxy not listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Stops passing bytes both ways (a partition): they are held back, connections stay open. */
  cut(): void {
    this.isCut = true;
  }

  /**
   * Holds every byte both ways for `ms`, then delivers them all (a stall, not a cut): a request sent meanwhile
   * reaches etcd late, after its caller's deadline, and etcd still applies it. Its caller never hears back: a
   * request in doubt.
   *
   * The caller's cancellation of such a request (an HTTP/2 RST_STREAM at its deadline, a GOAWAY, closing the
   * connection) is dropped or delayed, not delivered right behind the request, where it would stop etcd before it
   * proposes the write. This models the case that matters, a cancel that reaches etcd after the proposal (a slow
   * raft commit, a slow disk): etcd cannot take a proposal back, so the write is applied after its caller gave
   * up, and after the caller's next request, sent to another member, was answered.
   */
  async stall(ms: number): Promise<void> {
    this.dropResets = true;
    this.cut();
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.restore();
  }

  /** Passes bytes again, first delivering what was held back. */
  restore(): void {
    this.isCut = false;
    this.dropResets = false;
    for (const link of [...this.links]) link.flush();
  }

  /** Drops every open connection (clients reconnect through the proxy), as after a network blip. */
  reset(): void {
    for (const link of [...this.links]) link.destroy();
  }

  async close(): Promise<void> {
    for (const link of this.links) link.destroy();
    this.links.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private listen(): Promise<void> {
    this.server = createServer((client) => {
      const link = new Link(
        client,
        connect(this.target.port, this.target.host),
        () => this.isCut,
        () => this.dropResets,
      );
      this.links.add(link);
      link.onClose = () => this.links.delete(link);
    });
    return new Promise((resolve) => this.server?.listen(0, '127.0.0.1', () => resolve()));
  }
}

/**
 * One proxied connection: forwards each chunk, or holds it back while the proxy is cut. As TCP does, what a client
 * sent before it closed the connection still reaches etcd, then the close: a client that gives up on a stalled
 * request (a deadline, a channel reset) does not take back the bytes already on their way.
 */
class Link {
  private readonly held: Array<[Socket, Buffer]> = [];
  /** The client's bytes toward etcd, cut into HTTP/2 frames so that a stream reset can be told apart. */
  private readonly toEtcd = new Http2Frames();
  /** The client closed while bytes for etcd were held: deliver them at `flush()`, then close toward etcd. */
  private clientGone = false;
  /** ... and its close reaches etcd late, after what it held was proposed (see `TcpProxy.stall`). */
  private closesLate = false;
  private closed = false;
  onClose: () => void = () => {};

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly cut: () => boolean,
    private readonly dropResets: () => boolean,
  ) {
    client.on('data', (chunk) => {
      for (const frame of this.toEtcd.push(chunk)) {
        const cancel = frame.type === RST_STREAM || frame.type === GOAWAY;
        if (!(cancel && this.cut() && this.dropResets())) this.forward(upstream, frame.bytes);
      }
    });
    upstream.on('data', (chunk) => this.forward(client, chunk));
    client.on('error', () => this.clientClosed()).on('close', () => this.clientClosed());
    upstream.on('error', () => this.destroy()).on('close', () => this.destroy());
  }

  flush(): void {
    for (const [to, chunk] of this.held.splice(0)) if (!to.destroyed) to.write(chunk);
    if (!this.clientGone) return;
    if (this.closesLate) setTimeout(() => this.destroy(true), LATE_CLOSE_MS).unref();
    else this.destroy(true);
  }

  destroy(gracefully = false): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    if (gracefully) this.upstream.end();
    else this.upstream.destroy();
    this.onClose();
  }

  private clientClosed(): void {
    if (this.cut() && this.held.some(([to]) => to === this.upstream)) {
      this.clientGone = true;
      this.closesLate = this.dropResets();
    } else this.destroy(true);
  }

  private forward(to: Socket, chunk: Buffer): void {
    if (this.cut()) this.held.push([to, chunk]);
    else if (!to.destroyed) to.write(chunk);
  }
}

const RST_STREAM = 0x3;
const GOAWAY = 0x7;
/** How long after its held requests a stalled client's close reaches etcd: long enough for etcd to propose them. */
const LATE_CLOSE_MS = 250;
const CLIENT_PREFACE_LENGTH = 24; // 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
const FRAME_HEADER_LENGTH = 9;

/**
 * Cuts a client's HTTP/2 byte stream into whole units: the connection preface, then frames (a 9-byte header whose
 * first 3 bytes are the payload length and 4th the type). Bytes of an unfinished frame wait for the next chunk.
 */
class Http2Frames {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;

  push(chunk: Buffer): Array<{ type: number | undefined; bytes: Buffer }> {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const units: Array<{ type: number | undefined; bytes: Buffer }> = [];
    for (;;) {
      if (!this.prefaceSeen) {
        if (this.pending.length < CLIENT_PREFACE_LENGTH) break;
        units.push({ type: undefined, bytes: this.pending.subarray(0, CLIENT_PREFACE_LENGTH) });
        this.pending = this.pending.subarray(CLIENT_PREFACE_LENGTH);
        this.prefaceSeen = true;
        continue;
      }
      if (this.pending.length < FRAME_HEADER_LENGTH) break;
      const length = FRAME_HEADER_LENGTH + this.pending.readUIntBE(0, 3);
      if (this.pending.length < length) break;
      units.push({ type: this.pending[3], bytes: this.pending.subarray(0, length) });
      this.pending = this.pending.subarray(length);
    }
    return units;
  }
}
