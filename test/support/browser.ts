/**
 * Debian's Chromium driven by playwright-core, the way the console's tests use it: one fresh profile per person
 * (its own cookie jar, like a second browser), every console error and uncaught page error collected, the
 * kubevisa sign-in through the real identity provider's login form, and axe-core run inside the page.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from './kubevisa-env.ts';

// playwright-core colours its error messages with the `colors` package, which assigns `__proto__` on a new function
// each time: under --disable-proto=throw (every kubevisa process, test processes included) that throws inside
// Playwright's dispatcher, so a failed step would crash the run or hang instead of saying what failed. Functions
// (only functions: never the plain objects outside data becomes) get the standard accessor back in this process.
Object.defineProperty(Function.prototype, '__proto__', {
  configurable: true,
  get(this: object) {
    return Object.getPrototypeOf(this) as unknown;
  },
  set(this: object, value: object | null) {
    Object.setPrototypeOf(this, value);
  },
});

export const CHROMIUM = '/usr/bin/chromium';
/** Without the background-networking flags Chromium floods refused connections on these machines. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions seen in any page of this browser (the identity provider's included). */
  errors: string[];
  /** Those seen while the page was on `origin` (the console's own). */
  errorsOn(origin: string): string[];
  close(): Promise<void>;
}

export async function openBrowser(
  options: { width?: number; height?: number; isMobile?: boolean } = {},
): Promise<TestBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'kubevisa-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    // The test server's certificate comes from a throwaway CA the browser does not know; the origin stays https,
    // so Secure cookies and the secure-context rules apply as in production.
    ignoreHTTPSErrors: true,
    viewport: { width: options.width ?? 1280, height: options.height ?? 860 },
    ...(options.isMobile ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
    timeout: 60_000,
  });
  const errors: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(`${page.url()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => errors.push(`${page.url()}: ${error.message}`));
  };
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  page.setDefaultTimeout(20_000);
  return {
    context,
    page,
    errors,
    errorsOn: (origin) => errors.filter((e) => e.startsWith(`${new URL(origin).origin}/`)),
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Signs in at the console through the identity provider's login form; ends on the page `path`. */
export async function signIn(
  browser: TestBrowser,
  serverUrl: string,
  person: { email: string; password: string },
  path = '/access',
): Promise<void> {
  const { page } = browser;
  await page.goto(`${serverUrl}${path}`);
  await page.getByRole('link', { name: /sign in/i }).click();
  await page.waitForURL((url) => !url.href.startsWith(serverUrl));
  await page.locator('input[name="login"]').fill(person.email);
  await page.locator('input[name="password"]').fill(person.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // Some providers ask for consent once per client: the dev IdP's page has one button to continue.
  await page.waitForURL((url) => url.href.startsWith(serverUrl) && url.pathname === path, { timeout: 30_000 });
  await page.getByText(person.email).first().waitFor();
}

/** axe-core's violations of impact serious or critical on the page as it is now. */
export async function seriousAxeViolations(page: Page): Promise<{ id: string; impact: string; nodes: string[] }[]> {
  const source = await readFile(join(repoRoot, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  // Evaluated through the DevTools protocol, not as a <script>: the console's CSP (rightly) refuses inline script.
  await page.evaluate(`${source}\n;undefined`);
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: AxeViolation[] }> } }).axe;
    return (await axe.run()).violations;
  });
  return result
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact ?? '', nodes: v.nodes.map((n) => n.html.slice(0, 120)) }));
}

interface AxeViolation {
  id: string;
  impact?: string;
  nodes: { html: string }[];
}

/** Where a run's screenshots go: KUBEVISA_SCREENSHOTS or a folder under the system's temporary directory. */
export async function screenshotDir(): Promise<string> {
  const dir = process.env.KUBEVISA_SCREENSHOTS ?? join(tmpdir(), 'kubevisa-console-screenshots');
  await mkdir(dir, { recursive: true });
  return dir;
}
