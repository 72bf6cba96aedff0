/**
 * Says the first report of a problem and stays quiet until `reset()` (the problem ended): one line per outage,
 * not one per retry or per call.
 */
export class LogOnce {
  private said = false;

  constructor(private readonly say: (message: string) => void) {}

  report(message: () => string): void {
    if (this.said) return;
    this.said = true;
    this.say(message());
  }

  reset(): void {
    this.said = false;
  }
}
