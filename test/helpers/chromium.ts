/**
 * Headless Chromium for the browser tests: Debian's `chromium` package driven by playwright-core,
 * which never downloads a browser of its own here.
 */

/** CHROMIUM is where Debian's chromium package puts the browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** CHROMIUM_ARGS are the flags for a headless browser run as root, offline, with no profile of its own to keep. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** MISSING_CHROMIUM is the failure of every browser test when the browser is not installed. */
export const MISSING_CHROMIUM = `${CHROMIUM} is missing: the browser tests need Debian's chromium package. Install it with: apt-get update && apt-get install -y chromium`;
