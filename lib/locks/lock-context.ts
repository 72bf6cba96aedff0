import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lock } from './lock.interface.js';

/** The lock of the `withLock` callback or `@Singleton` method running now, for `LockService.current()`. */
export const lockContext = new AsyncLocalStorage<Lock>();
