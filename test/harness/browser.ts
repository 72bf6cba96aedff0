import { type Browser, chromium } from 'playwright-core';
import { chromiumBin } from '../../scripts/chromium-bin.mjs';

/**
 * Debian's Chromium, headless, driven by Playwright (`npm run test:browser` installs it first). The flags keep it
 * off the network (a closed machine refuses its background connections); Playwright gives it a fresh profile.
 */
export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumBin();
  if (!executablePath) throw new Error('no Chromium: run `node scripts/ensure-etcd.mjs --chromium`, or set CHROMIUM_BIN');
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
