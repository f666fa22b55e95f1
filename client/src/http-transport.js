// The HTTP transport: the REST API with the Bearer token (`call()` sends one
// operation of operations.js), and the fallback's lifecycle while the socket cannot
// get through: catch up, then long-poll GET /poll for the server's events.

import { ChatError } from './errors.js';
import { httpRequest } from './operations.js';
import { isObject, sleep } from './util.js';

/** @typedef {import('./tokens.js').TokenSource} TokenSource */

/**
 * @typedef {object} HttpHost  What the fallback loop tells ChatManager, and asks it.
 * @property {string | null} base                the REST API root; null: no HTTP at all
 * @property {TokenSource} tokens
 * @property {typeof fetch} fetch
 * @property {{ackTimeoutMs: number, pollTimeoutMs: number}} options
 * @property {(failures: number) => number} retryDelay
 * @property {(signal: AbortSignal) => Promise<void>} catchUp  every open conversation from history
 * @property {(signal: AbortSignal) => Promise<void>} onCaughtUp  the fallback runs: say so, send
 *                                               what waited
 * @property {() => void} onFailing              polls fail again and again
 * @property {(cursor: string | null) => void} onResync  the poll's cursor was too old: history
 *                                               filled the gap
 * @property {() => string | null} cursor        where to start polling: the cursor the socket's
 *                                               joins left (cursors.js); null: from now
 * @property {(cursor: string | null) => void} onCursor  every answer's cursor; null: the one
 *                                               polled with was refused
 * @property {(event: string, data: any) => void} dispatch  a server event from the poll
 *
 * @typedef {{signal?: AbortSignal, timeoutMs?: number}} CallOptions
 */

export class HttpTransport {
  /** @param {HttpHost} host */
  constructor(host) {
    this._host = host;
    /** @type {AbortController | null} ends the fallback loop when the socket is back */
    this._abort = null;
  }

  /** Whether the fallback loop runs (it may be catching up, or failing, still). */
  get running() {
    return this._abort !== null;
  }

  /** The signal that ends with the fallback loop, while it runs. */
  get signal() {
    return this._abort?.signal;
  }

  /**
   * One operation over REST: the answer in the shape of the socket's ack; a failure
   * is a ChatError with the HTTP status, no answer ChatError('OFFLINE').
   * @param {string} name @param {Record<string, unknown>} payload @param {CallOptions} [options]
   * @returns {Promise<any>}
   */
  async call(name, payload, options) {
    const { method, path, body, reply } = httpRequest(name, payload);
    const answer = await this._request(method, path, body, options);
    return reply ? reply(answer, payload) : answer;
  }

  /**
   * One REST request with the Bearer token; a refused token is refreshed once.
   * @param {string} method @param {string} path below the API root @param {unknown} body
   * @param {CallOptions} [options]
   * @returns {Promise<any>} the decoded JSON answer
   */
  async _request(method, path, body, options = {}) {
    const { base, tokens } = this._host;
    if (!base) throw new ChatError('OFFLINE', 'no HTTP fallback configured');
    for (let attempt = 0; ; attempt += 1) {
      const token = await tokens.current();
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(), options.timeoutMs ?? this._host.options.ackTimeoutMs);
      const onAbort = () => timeout.abort();
      options.signal?.addEventListener('abort', onAbort);
      let response;
      try {
        /** @type {Record<string, string>} */
        const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        response = await this._host.fetch(`${base}${path}`, {
          method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: timeout.signal,
        });
      } catch (error) {
        throw new ChatError('OFFLINE', `HTTP ${method} ${path} failed: ${String(error)}`);
      } finally {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      }
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      if (response.ok) return payload ?? {};
      const error = isObject(payload) && isObject(payload.error) ? payload.error : {};
      const code = typeof error.code === 'string' ? error.code
        : response.status === 401 ? 'AUTH_FAILED' : response.status >= 500 ? 'UNAVAILABLE' : 'INVALID_PAYLOAD';
      if ((code === 'TOKEN_EXPIRED' || code === 'AUTH_FAILED' || response.status === 401)
          && attempt === 0 && tokens.canRefresh) {
        tokens.forget(); // refresh once, then repeat the call
        continue;
      }
      throw new ChatError(code, typeof error.message === 'string' ? error.message : `HTTP ${response.status}`, response.status);
    }
  }

  /** Start the fallback loop (once; the socket keeps trying meanwhile). */
  start() {
    if (this._abort) return;
    this._abort = new AbortController();
    this._loop(this._abort.signal);
  }

  /** End the fallback loop: the socket is back, or the manager closed. */
  stop() {
    this._abort?.abort();
    this._abort = null;
  }

  /**
   * While the socket is down: catch up every open conversation over REST, then
   * long-poll. Ends when `signal` aborts.
   * @param {AbortSignal} signal
   */
  async _loop(signal) {
    const host = this._host;
    let failures = 0;
    /** @type {string | null} */
    let cursor = null;
    /** @type {string} typing and presence after this position (the answer's `live`) */
    let live = '';
    let caughtUp = false;
    while (!signal.aborted) {
      try {
        if (!caughtUp) {
          // The cursor first, then the catch-up: whatever happens in between comes
          // both ways, and repeats are dropped by id.
          ({ cursor, live } = await this._pollCursor(signal));
          await host.catchUp(signal);
          if (signal.aborted) return; // the socket came back meanwhile
          caughtUp = true;
          failures = 0;
          await host.onCaughtUp(signal);
        }
        const body = await this.call('poll', { cursor: cursor ?? '', live }, {
          signal, timeoutMs: host.options.pollTimeoutMs,
        });
        if (signal.aborted) return;
        cursor = body.cursor ?? cursor;
        if (body.resync === true) {
          // The server no longer keeps the events back to our cursor (it was away
          // longer than the event log's retention): what was missed comes from
          // history, then the poll goes on from the cursor given with the answer.
          caughtUp = false; // should the catch-up fail, the next round starts over
          await host.catchUp(signal);
          if (signal.aborted) return;
          caughtUp = true;
          host.onResync(cursor);
        }
        if (typeof body.live === 'string') live = body.live;
        this._dispatchAll(body);
        host.onCursor(cursor); // every conversation of ours is had up to here
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        if (error instanceof ChatError && error.code === 'INVALID_PAYLOAD' && cursor !== null) {
          caughtUp = false; // a cursor the server no longer knows: start over
          host.onCursor(null); // (and the socket's joins: with `since`)
        }
        if (failures > 1) {
          host.onFailing();
          caughtUp = false;
        }
        await sleep(host.retryDelay(failures), signal);
      }
    }
  }

  /**
   * Where to poll from: the cursor the socket's joins left when there is one (the
   * changes made since come by the poll, edits and deletions too), else the present.
   * @param {AbortSignal} signal @returns {Promise<{cursor: string | null, live: string}>}
   */
  async _pollCursor(signal) {
    const kept = this._host.cursor();
    if (kept !== null) return { cursor: kept, live: '' };
    const body = await this.call('poll', {}, { signal, timeoutMs: this._host.options.pollTimeoutMs });
    this._dispatchAll(body);
    const cursor = typeof body.cursor === 'string' ? body.cursor : body.cursor != null ? String(body.cursor) : null;
    return { cursor, live: typeof body.live === 'string' ? body.live : '' };
  }

  /** @param {any} body a poll's answer */
  _dispatchAll(body) {
    for (const item of Array.isArray(body.events) ? body.events : []) this._host.dispatch(item.event, item.data);
  }
}
