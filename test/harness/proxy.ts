import { type AddressInfo, createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy on loopback between a client and etcd that can cut traffic off: while cut, bytes in both
 * directions are held back (connections stay open, as in a network partition, not refused).
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private isCut = false;

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
   * reaches etcd late, after its caller's deadline, and etcd may still apply it. Its caller never hears back: a
   * request in doubt.
   */
  async stall(ms: number): Promise<void> {
    this.cut();
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.restore();
  }

  /** Passes bytes again, first delivering what was held back. */
  restore(): void {
    this.isCut = false;
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
      const link = new Link(client, connect(this.target.port, this.target.host), () => this.isCut);
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
  /** The client closed while bytes for etcd were held: deliver them at `flush()`, then close toward etcd. */
  private clientGone = false;
  private closed = false;
  onClose: () => void = () => {};

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly cut: () => boolean,
  ) {
    client.on('data', (chunk) => this.forward(upstream, chunk));
    upstream.on('data', (chunk) => this.forward(client, chunk));
    client.on('error', () => this.clientClosed()).on('close', () => this.clientClosed());
    upstream.on('error', () => this.destroy()).on('close', () => this.destroy());
  }

  flush(): void {
    for (const [to, chunk] of this.held.splice(0)) if (!to.destroyed) to.write(chunk);
    if (this.clientGone) this.destroy(true);
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
    if (this.cut() && this.held.some(([to]) => to === this.upstream)) this.clientGone = true;
    else this.destroy(true);
  }

  private forward(to: Socket, chunk: Buffer): void {
    if (this.cut()) this.held.push([to, chunk]);
    else if (!to.destroyed) to.write(chunk);
  }
}
