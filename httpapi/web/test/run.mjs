// What every Chromium script here shares: a run's checks and result.json, polling, and a
// headless Debian Chromium. Each script (browser.mjs, whip.mjs, simulcast.mjs, codecs.mjs) holds
// only its own steps; the Go tests in httpapi/e2e read the result.json this writes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until polls fn every 100 ms until it returns something truthy (an Error counts as not yet, as
// does a throw) and returns that, or throws after ms with the last thing fn gave.
export async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last && !(last instanceof Error)) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
}

// Run collects a script's checks into result (written as result.json under out, BROWSER_OUT or a
// fresh temporary directory) and logs each under the script's tag.
export class Run {
  constructor(tag, result = {}) {
    this.tag = tag;
    this.out = process.env.BROWSER_OUT || fs.mkdtempSync(path.join(os.tmpdir(), `castbridge-${tag.split(' ')[0]}-`));
    fs.mkdirSync(this.out, { recursive: true });
    this.result = { ...result, checks: [] };
    this.failed = 0;
    this.pageErrors = [];
  }

  log(...a) {
    console.log(`[${this.tag}]`, ...a);
  }

  check(name, cond, detail) {
    this.result.checks.push({ name, ok: !!cond, detail: detail === undefined ? undefined : String(detail) });
    if (!cond) this.failed++;
    this.log(cond ? 'ok  ' : 'FAIL', name, detail === undefined ? '' : `(${detail})`);
    return !!cond;
  }

  // watch fails the run on a page's uncaught exceptions and, unless consoleErrors returns false
  // for it, on what it logs as an error.
  watch(page, consoleErrors = () => true) {
    page.on('pageerror', (e) => this.pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && consoleErrors(m.text())) this.pageErrors.push('console.error: ' + m.text());
    });
  }

  // finish records the page errors, closes the browser, writes result.json and exits: 0 when
  // every check passed.
  async finish(browser) {
    this.check('no page errors', this.pageErrors.length === 0, this.pageErrors.join(' | '));
    if (browser) await browser.close();
    this.result.failed = this.failed;
    fs.writeFileSync(path.join(this.out, 'result.json'), JSON.stringify(this.result, null, 2));
    console.log(`${this.tag}: ${this.result.checks.length - this.failed} passed, ${this.failed} failed`);
    process.exit(this.failed ? 1 : 0);
  }
}

const baseArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// launchChromium starts Debian's Chromium (CHROMIUM, default /usr/bin/chromium) headless in a
// throw-away profile. close() ends it and removes the profile.
export async function launchChromium(extraArgs = [], options = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'castbridge-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ...options,
    args: [...baseArgs, ...extraArgs],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
