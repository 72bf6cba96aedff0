/** Injection token of the validated options with defaults filled in (internal). */
export const RESOLVED_OPTIONS = Symbol('EtcdLockResolvedOptions');
