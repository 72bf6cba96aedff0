/** Where libfaketime is, or undefined (see faketime-lib.mjs). */
export function faketimeLib(): string | undefined;
