/** Where a Chromium that runs is, or undefined (see chromium-bin.mjs). */
export function chromiumBin(): string | undefined;
