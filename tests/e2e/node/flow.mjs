#!/usr/bin/env node
// Drives the chat server with the real socket.io-client v4, as the browser's
// ChatManager.js does, and reports everything the clients saw as JSON.
//
// Usage: node flow.mjs '<config json>'   (or the config in the FLOW_CONFIG variable)
//
// config: {
//   scenario: 'flow'      two users, every client event and what the other one sees
//           | 'refused'   handshakes with bad tokens, then one good one
//           | 'connect',  one good handshake and a round trip (then finish() closes it)
//   url: 'http://127.0.0.1:PORT',
//   transports: ['websocket'] | ['polling'] | ['polling', 'websocket'],
//   waitMs: 5000,                       // every wait times out after this
//   deadlineMs: 20000,                  // the whole script gives up after this
//   // flow:
//   tokens: { alice, bob }, conversationId, message: { messageId, text }, emoji,
//   advance: { withinGraceS, pastGraceS },
//   // refused:
//   badTokens: { label: token, ... }, tokens: { alice }
//   // connect:
//   tokens: { alice }
// }
//
// Lines on stdout are JSON objects. The clock of the server under test only moves
// when the test moves it, so when the flow needs time to pass it prints
//   {"type":"advance","id":N,"seconds":S,"untilSessions":K?}
// and waits for {"type":"advanced","id":N} on stdin (the test first waits until the
// server holds K sessions, when given, then advances its clock by S seconds).
// The last line is {"type":"result", ...}; the exit status is 0 when no step failed.

import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2] ?? process.env.FLOW_CONFIG ?? 'null');
if (config === null || typeof config !== 'object') {
  process.stderr.write('usage: node flow.mjs \'<config json>\'\n');
  process.exit(2);
}
const WAIT_MS = config.waitMs ?? 5000;
const DEADLINE_MS = config.deadlineMs ?? 20000;
const startedAt = Date.now();

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

// -- requests to the test over stdin --------------------------------------------------

const replies = new Map(); // id -> resolve
let nextRequestId = 0;
const stdin = createInterface({ input: process.stdin });
stdin.on('line', (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    process.stderr.write(`flow.mjs: ignoring a line that is not JSON: ${line}\n`);
    return;
  }
  const resolve = replies.get(message.id);
  if (resolve !== undefined) {
    replies.delete(message.id);
    resolve(message);
  }
});

function askTest(request, timeoutMs = 2 * WAIT_MS) {
  const id = ++nextRequestId;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      replies.delete(id);
      reject(new Error(`no reply from the test to ${JSON.stringify(request)} in ${timeoutMs} ms`));
    }, timeoutMs);
    replies.set(id, (message) => {
      clearTimeout(timer);
      resolve(message);
    });
    send({ ...request, id });
  });
}

// -- a recording client ------------------------------------------------------------------

class Client {
  constructor(label, options) {
    this.label = label;
    this.seq = 0;
    this.events = []; // what the server emitted: { seq, event, data }
    this.lifecycle = []; // the client's own events: connect, connect_error, disconnect
    this.acks = []; // { seq, event, request, reply }
    this.upgrades = []; // transports the engine upgraded to
    this.waiters = new Set();
    this.socket = io(config.url, {
      ...options,
      forceNew: true,
      reconnection: false,
      timeout: WAIT_MS,
    });
    this.socket.onAny((event, ...args) => {
      this.record(this.events, { event, data: args.length === 1 ? args[0] : args });
    });
    this.socket.on('connect', () => {
      this.record(this.lifecycle, { event: 'connect', data: { transport: this.transport() } });
    });
    this.socket.on('connect_error', (err) => {
      this.record(this.lifecycle, {
        event: 'connect_error',
        data: { message: err.message, data: err.data ?? null, active: this.socket.active },
      });
    });
    this.socket.on('disconnect', (reason) => {
      this.record(this.lifecycle, { event: 'disconnect', data: { reason } });
    });
    this.socket.io.on('open', () => {
      this.socket.io.engine.on('upgrade', (transport) => this.upgrades.push(transport.name));
    });
  }

  transport() {
    return this.socket.io.engine?.transport?.name ?? null;
  }

  record(list, entry) {
    list.push({ seq: ++this.seq, ...entry });
    for (const waiter of this.waiters) waiter();
  }

  matching(list, event) {
    return list.filter((entry) => entry.event === event);
  }

  // Resolves once `count` entries named `event` were recorded in `list`.
  waitIn(list, event, count = 1) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.matching(list, event);
        if (found.length < count) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const seen = list.map((entry) => entry.event).join(', ') || 'nothing';
        reject(new Error(
          `${this.label}: ${count} × '${event}' not received in ${WAIT_MS} ms (saw ${seen})`,
        ));
      }, WAIT_MS);
      if (!check()) this.waiters.add(check);
    });
  }

  waitFor(event, count = 1) {
    return this.waitIn(this.events, event, count);
  }

  waitForLifecycle(event, count = 1) {
    return this.waitIn(this.lifecycle, event, count);
  }

  // Emits with an acknowledgement callback, as ChatManager.js does; the reply is recorded.
  async ack(event, ...args) {
    const reply = await this.socket.timeout(WAIT_MS).emitWithAck(event, ...args);
    this.acks.push({ seq: ++this.seq, event, request: args.length ? args[0] : null, reply });
    return reply;
  }

  // As ack(), for a step that cannot go on unless the server said yes.
  async okAck(event, ...args) {
    const reply = await this.ack(event, ...args);
    if (reply?.ok !== true) {
      throw new Error(`${this.label}: '${event}' was answered ${JSON.stringify(reply)}`);
    }
    return reply;
  }

  // Emits without a callback (fire and forget).
  emit(event, data) {
    this.socket.emit(event, data);
  }

  close() {
    if (this.socket.connected || this.socket.active) this.socket.disconnect();
  }

  report() {
    return {
      id: this.socket.id ?? null,
      connected: this.socket.connected,
      active: this.socket.active,
      transport: this.transport(),
      upgrades: this.upgrades,
      events: this.events,
      lifecycle: this.lifecycle,
      acks: this.acks,
    };
  }
}

// -- the scenarios -----------------------------------------------------------------------

const result = {
  type: 'result', scenario: config.scenario, steps: [], failedStep: null, error: null, clients: {},
};
const clients = {};

function transportOptions() {
  const transports = config.transports ?? ['websocket'];
  // A polling-only run must stay on polling: no upgrade to websocket behind our back.
  return { transports, upgrade: transports.includes('websocket') && transports.length > 1 };
}

async function step(name, body) {
  const began = Date.now();
  try {
    await body();
  } catch (err) {
    result.failedStep = name;
    throw err;
  }
  result.steps.push({ name, ms: Date.now() - began });
}

async function flow() {
  const { conversationId, tokens } = config;
  const options = transportOptions();
  let alice;
  let bob;
  let sent;

  await step('alice connects with auth.token in the handshake', async () => {
    alice = clients.alice = new Client('alice', { ...options, auth: { token: tokens.alice } });
    await alice.waitForLifecycle('connect');
    await alice.waitFor('authenticated');
  });

  await step('bob connects without a token', async () => {
    bob = clients.bob = new Client('bob', options);
    await bob.waitForLifecycle('connect');
    await bob.waitFor('connected');
  });

  await step('bob is refused before authenticating', async () => {
    await bob.ack('presence:request'); // refused: the test checks the reply
    await bob.waitFor('error');
  });

  await step('bob authenticates with the authenticate event', async () => {
    await bob.okAck('authenticate', { token: tokens.bob });
    await bob.waitFor('authenticated');
    await alice.waitFor('user:online');
  });

  await step('alice joins the conversation', async () => {
    await alice.okAck('conversation:join', { conversationId });
  });

  await step('bob joins the conversation', async () => {
    await bob.okAck('conversation:join', { conversationId });
    await alice.waitFor('user:joined');
  });

  await step('alice sends a message', async () => {
    sent = await alice.okAck('message:send', { conversationId, ...config.message });
    await alice.waitFor('message:ack');
    await bob.waitFor('message:new');
  });

  await step('alice starts typing', async () => {
    alice.emit('typing:start', { conversationId });
    await bob.waitFor('typing:indicator', 1);
  });

  await step('alice stops typing', async () => {
    alice.emit('typing:stop', { conversationId });
    await bob.waitFor('typing:indicator', 2);
  });

  await step('bob reads the message', async () => {
    await bob.okAck('message:read', { conversationId, messageId: sent.id });
    await alice.waitFor('message:read-receipt');
  });

  await step('bob reacts to the message', async () => {
    await bob.okAck('message:react', { conversationId, messageId: sent.id, emoji: config.emoji });
    await alice.waitFor('message:reaction');
  });

  await step('alice asks who is online in the conversation', async () => {
    await alice.okAck('presence:request', { conversationId }); // answered in the ack only
  });

  await step('bob asks who is online, with no data', async () => {
    await bob.okAck('presence:request');
  });

  await step('bob disconnects; time passes, within the grace period', async () => {
    result.bobTransportAtEnd = bob.transport();
    bob.close();
    await bob.waitForLifecycle('disconnect');
    await askTest({ type: 'advance', seconds: config.advance.withinGraceS, untilSessions: 1 });
  });

  await step('alice still sees bob online within the grace period', async () => {
    // Anything the server emitted to alice before this reply arrives before it.
    await alice.okAck('presence:request', { conversationId });
    result.offlineWithinGrace = alice.matching(alice.events, 'user:offline').length;
  });

  await step('the grace period ends: alice sees bob go offline', async () => {
    await askTest({ type: 'advance', seconds: config.advance.pastGraceS });
    await alice.waitFor('user:offline');
  });

  result.aliceTransportAtEnd = alice.transport();
}

// A valid client connects, makes one round trip, and is left for finish() to close.
async function connectOnce(options) {
  await step('a valid handshake works', async () => {
    const alice = clients.alice = new Client('alice', {
      ...options, auth: { token: config.tokens.alice },
    });
    await alice.waitFor('authenticated');
    await alice.okAck('presence:request');
  });
}

async function refused() {
  const options = transportOptions();
  for (const [label, token] of Object.entries(config.badTokens)) {
    await step(`a handshake with the ${label} token is refused`, async () => {
      const client = clients[label] = new Client(label, { ...options, auth: { token } });
      await client.waitForLifecycle('connect_error');
    });
  }
  // A good client's round trip after them: anything the refused sockets were (wrongly)
  // sent after their connect_error has arrived by the time it is done.
  await connectOnce(options);
  await step('the server holds no session for the refused sockets', async () => {
    await askTest({ type: 'advance', seconds: 0, untilSessions: 1 });
  });
}

async function connect() {
  await connectOnce(transportOptions());
}

function finish(code) {
  for (const [label, client] of Object.entries(clients)) {
    result.clients[label] = client.report();
    client.close();
  }
  result.ms = Date.now() - startedAt;
  stdin.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // Exit once the close packets are out (a polling client sends its own in a
  // request of its own): the event loop empties by itself. Never wait long for it.
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

const deadline = setTimeout(() => {
  result.error = `flow.mjs gave up after ${DEADLINE_MS} ms`;
  finish(1);
}, DEADLINE_MS);

const scenarios = { flow, refused, connect };
const run = scenarios[config.scenario];
if (run === undefined) {
  result.error = `unknown scenario ${JSON.stringify(config.scenario)}`;
  finish(2);
} else {
  run().then(
    () => {
      clearTimeout(deadline);
      finish(0);
    },
    (err) => {
      clearTimeout(deadline);
      result.error = `${err?.stack ?? err}`;
      finish(1);
    },
  );
}
