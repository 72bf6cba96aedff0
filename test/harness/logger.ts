import { ConsoleLogger } from '@nestjs/common';

/** A Nest logger that records each line with its level, and prints nothing. */
export class RecordingLogger extends ConsoleLogger {
  readonly lines: Array<{ level: 'log' | 'warn' | 'error'; message: string }> = [];

  override log(message: unknown): void {
    this.lines.push({ level: 'log', message: String(message) });
  }

  override warn(message: unknown): void {
    this.lines.push({ level: 'warn', message: String(message) });
  }

  override error(message: unknown, ...rest: unknown[]): void {
    this.lines.push({ level: 'error', message: [message, ...rest].map(String).join(' ') });
  }

  override debug(): void {}
  override verbose(): void {}

  /** The messages logged at `level`. */
  at(level: 'log' | 'warn' | 'error'): string[] {
    return this.lines.filter((line) => line.level === level).map((line) => line.message);
  }
}
