#!/usr/bin/env node
// Drives Debian's Chromium with playwright-core for the Python browser tests.
//
// Usage: node runner.mjs '<config json>'
//   config: { playwrightDir, executablePath, args: [...], slowMo? }
//
// Protocol: one JSON object a line. The test writes requests on stdin,
//   { id, cmd, ...arguments }
// and the runner answers each on stdout, in order of completion,
//   { id, ok: true, value } or { id, ok: false, error }
// The first line the runner writes is { ready: true, version } once Chromium runs.
//
// Commands (`page` names a page; each page has a browser context of its own, so
// two pages are two independent users):
//   newPage { page, blockable?, width?, height?, touch? }   blockable: its /socket.io/
//                                   traffic can be cut; width and height: the viewport in
//                                   CSS px; touch: a phone's touch screen (hasTouch, isMobile)
//   goto { page, url }
//   fill { page, selector, value }  press { page, selector, key }
//   type { page, selector, text, delayMs? }   one key at a time, like a person
//   click { page, selector }       hover { page, selector }   tap { page, selector } (touch pages)
//   eval { page, fn, arg? }         fn: the source of a function, called with arg
//   waitFor { page, fn, arg?, timeoutMs }   polls fn(arg) until truthy; returns it
//   block { page, websocket, polling }      cut the socket.io websocket and/or
//                                   its HTTP long-polling (as a proxy would)
//   stallPolls { page, stall }      hold the page's REST long-polls (GET .../poll) in the
//                                   proxy, as a sleeping laptop does; stall false sends the
//                                   held ones on; answers how many are held now
//   dropAcks { page, count }        lose the next `count` message:send acknowledgements
//                                   the server sends on a blockable page's websocket
//   stripMembers { page, strip }    on a blockable page, take `members` out of the socket's
//                                   acknowledgements and the REST history pages, as from a
//                                   server that does not list them
//   screenshot { page, path, fullPage? }
//   logs { page }                   console messages and page errors so far
//   requests { page }               every URL the page asked for (websockets too)
//   framesSent { page }             what the page sent on its websockets (500 chars each)
//   close                           closes Chromium; the runner exits

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const config = JSON.parse(process.argv[2] ?? 'null');
if (!config || typeof config !== 'object') {
  process.stderr.write("usage: node runner.mjs '<config json>'\n");
  process.exit(2);
}
const require = createRequire(join(config.playwrightDir, 'noop.js'));
const { chromium } = require('playwright-core');

function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const browser = await chromium.launch({
  executablePath: config.executablePath,
  args: config.args,
  headless: true,
  slowMo: config.slowMo ?? 0,
});

/** @type {Map<string, {page: import('playwright-core').Page, logs: string[], blocked: {websocket: boolean, polling: boolean}}>} */
const pages = new Map();
const SOCKET_IO = /\/socket\.io\//;
const LONG_POLL = /\/api\/messenger\/poll\b/;
const HISTORY_PAGE = /\/api\/messenger\/conversations\/\d+\/messages(\?|$)/;

/** A socket.io acknowledgement frame (`43<id>[...]`) without `members` in its arguments. */
function withoutMembers(frame) {
  const ack = /^43(\d*)(\[[\s\S]*\])$/.exec(frame);
  if (!ack) return frame;
  const args = JSON.parse(ack[2]);
  for (const arg of args) if (arg && typeof arg === 'object') delete arg.members;
  return `43${ack[1]}${JSON.stringify(args)}`;
}

function pageOf(name) {
  const entry = pages.get(name);
  if (!entry) throw new Error(`no page named ${JSON.stringify(name)}`);
  return entry;
}

const commands = {
  async newPage({ page: name, blockable = false, width = 1100, height = 720, touch = false }) {
    const context = await browser.newContext({ viewport: { width, height }, hasTouch: touch, isMobile: touch });
    const page = await context.newPage();
    const entry = {
      page, logs: [], requests: [], framesSent: [], blocked: { websocket: false, polling: false }, dropAcks: 0,
      stallPolls: false, stalled: [], stripMembers: false,
    };
    page.on('console', (message) => entry.logs.push(`${message.type()}: ${message.text()}`));
    page.on('request', (request) => entry.requests.push(request.url()));
    page.on('websocket', (ws) => {
      entry.requests.push(ws.url());
      ws.on('framesent', (frame) => entry.framesSent.push(String(frame.payload).slice(0, 500)));
    });
    page.on('pageerror', (error) => entry.logs.push(`pageerror: ${error.stack || error.message}`));
    if (blockable) {
      // A proxy that kills websockets closes them at once; one that breaks polling
      // fails its requests. Everything else goes through untouched.
      await page.routeWebSocket(SOCKET_IO, (ws) => {
        if (entry.blocked.websocket) {
          ws.close({ code: 1006, reason: 'blocked by the test' });
          return;
        }
        const server = ws.connectToServer();
        server.onMessage((message) => {
          // A lost acknowledgement of message:send: the page hears nothing back.
          const text = String(message);
          if (entry.dropAcks > 0 && text.startsWith('43') && text.includes('"status":"sent"')) {
            entry.dropAcks -= 1;
            return;
          }
          ws.send(entry.stripMembers && typeof message === 'string' ? withoutMembers(message) : message);
        });
      });
      await page.route(SOCKET_IO, (route) => {
        if (entry.blocked.polling) route.abort('connectionfailed');
        else route.continue();
      });
      await page.route(LONG_POLL, (route) => {
        if (entry.stallPolls) entry.stalled.push(route);
        else route.continue();
      });
      await page.route(HISTORY_PAGE, async (route) => {
        if (!entry.stripMembers || route.request().method() !== 'GET') {
          await route.continue();
          return;
        }
        const response = await route.fetch();
        const body = await response.json().catch(() => null);
        if (body === null || typeof body !== 'object') {
          await route.fulfill({ response });
          return;
        }
        delete body.members;
        await route.fulfill({ response, json: body });
      });
    }
    pages.set(name, entry);
    return null;
  },
  async goto({ page, url }) {
    await pageOf(page).page.goto(url, { waitUntil: 'load' });
    return null;
  },
  async fill({ page, selector, value }) {
    await pageOf(page).page.fill(selector, value);
    return null;
  },
  async press({ page, selector, key }) {
    await pageOf(page).page.press(selector, key);
    return null;
  },
  async type({ page, selector, text, delayMs = 20 }) {
    await pageOf(page).page.locator(selector).pressSequentially(text, { delay: delayMs });
    return null;
  },
  async click({ page, selector }) {
    await pageOf(page).page.click(selector);
    return null;
  },
  async hover({ page, selector }) {
    await pageOf(page).page.hover(selector);
    return null;
  },
  async tap({ page, selector }) {
    await pageOf(page).page.tap(selector);
    return null;
  },
  async eval({ page, fn, arg = null }) {
    return pageOf(page).page.evaluate(([source, value]) => (0, eval)(`(${source})`)(value), [fn, arg]);
  },
  async waitFor({ page, fn, arg = null, timeoutMs = 5000 }) {
    const handle = await pageOf(page).page.waitForFunction(
      ([source, value]) => (0, eval)(`(${source})`)(value), [fn, arg], { timeout: timeoutMs, polling: 50 },
    );
    const value = await handle.jsonValue();
    await handle.dispose();
    return value;
  },
  async stallPolls({ page, stall }) {
    const entry = pageOf(page);
    entry.stallPolls = stall;
    if (!stall) {
      for (const route of entry.stalled.splice(0)) await route.continue();
    }
    return entry.stalled.length;
  },
  async block({ page, websocket = false, polling = false }) {
    pageOf(page).blocked = { websocket, polling };
    return null;
  },
  async dropAcks({ page, count }) {
    pageOf(page).dropAcks = count;
    return null;
  },
  async stripMembers({ page, strip }) {
    pageOf(page).stripMembers = strip;
    return null;
  },
  async screenshot({ page, path, fullPage = false }) {
    await pageOf(page).page.screenshot({ path, fullPage });
    return path;
  },
  async logs({ page }) {
    return pageOf(page).logs;
  },
  async requests({ page }) {
    return pageOf(page).requests;
  },
  async framesSent({ page }) {
    return pageOf(page).framesSent;
  },
  async close() {
    await browser.close();
    return null;
  },
};

reply({ ready: true, version: browser.version() });

const input = createInterface({ input: process.stdin });
input.on('line', async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    process.stderr.write(`runner.mjs: ignoring a line that is not JSON: ${line}\n`);
    return;
  }
  const command = commands[request.cmd];
  try {
    if (!command) throw new Error(`unknown command ${JSON.stringify(request.cmd)}`);
    const value = await command(request);
    reply({ id: request.id, ok: true, value: value ?? null });
    if (request.cmd === 'close') process.exit(0);
  } catch (error) {
    reply({ id: request.id, ok: false, error: String(error && error.stack ? error.stack : error) });
  }
});
input.on('close', async () => {
  // The test went away: do not leave Chromium behind.
  await browser.close().catch(() => {});
  process.exit(0);
});
