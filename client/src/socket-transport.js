// The Socket.IO transport: the connection and its lifecycle (handshake token, a
// refused or expired token, reconnects, when to give up and fall back to HTTP),
// and `call()`, which sends one operation (operations.js) and unwraps its ack.

import { io } from 'socket.io-client';
import { ChatError } from './errors.js';
import { socketRequest } from './operations.js';
import { isObject } from './util.js';

/** @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo */
/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./tokens.js').TokenSource} TokenSource */

// Refused handshakes in a row (each with a fresh token) before giving up.
const MAX_AUTH_REFUSALS = 3;

/**
 * @typedef {object} SocketHost  What the transport tells ChatManager, and asks it.
 * @property {TokenSource} tokens
 * @property {{ackTimeoutMs: number, fallbackAfterErrors: number, fallbackAfterMs: number}} options
 * @property {boolean} canFallBack             there is an HTTP API to fall back to
 * @property {() => boolean} closed
 * @property {(failures: number) => number} retryDelay
 * @property {(event: 'error', data: ChatErrorInfo) => void} emit
 * @property {(identity: Identity, refresh: boolean) => void} onReady  authenticated; `refresh`:
 *                                             a new token on a live socket (rooms kept)
 * @property {() => void} onDown               the connection dropped
 * @property {() => void} onConnectFailed      a connection attempt failed
 * @property {() => void} onUpgrade            the engine changed to another transport
 * @property {(refusal: ChatErrorInfo) => void} onUnauthorized  no token will be accepted, and
 *                                             the server's reason
 * @property {() => void} onUnreachable        time to fall back to HTTP
 * @property {(event: string, data: any) => void} dispatch  a server event
 */

export class SocketTransport {
  /** @param {SocketHost} host */
  constructor(host) {
    this._host = host;
    /** @type {import('socket.io-client').Socket | null} */
    this.socket = null;
    this.ready = false; // connected and authenticated
    this.refreshing = false; // a TOKEN_EXPIRED refresh is under way
    this._connectErrors = 0;
    this._authRefusals = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._fallbackTimer = null;
  }

  /** @returns {'websocket' | 'polling' | null} the engine's transport now */
  get name() {
    const name = this.socket?.io.engine?.transport?.name;
    return name === 'websocket' || name === 'polling' ? name : null;
  }

  /**
   * Open the socket; socket.io-client reconnects by itself from then on.
   * @param {string} url @param {Record<string, unknown>} ioOptions
   * @param {string[]} events the server events handed to `host.dispatch`
   */
  connect(url, ioOptions, events) {
    const host = this._host;
    const socket = io(url, {
      // Each (re)connection asks for the token anew, so a refreshed one is used.
      auth: (cb) => {
        host.tokens.current().then(
          (token) => cb({ token }),
          (error) => {
            host.emit('error', { code: 'AUTH_FAILED', message: `no token: ${error.message}`, event: null });
            cb({});
          },
        );
      },
      ...ioOptions,
    });
    this.socket = socket;
    this._armFallbackTimer();
    socket.on('connect', () => {
      this._connectErrors = 0;
      socket.io.engine.on('upgrade', () => host.onUpgrade());
    });
    socket.on('authenticated', (/** @type {Identity} */ identity) => this._onAuthenticated(identity));
    socket.on('connect_error', (/** @type {Error & {data?: any}} */ error) => this._onConnectError(error));
    socket.on('disconnect', (/** @type {string} */ reason) => this._onDisconnect(reason));
    socket.on('error', (/** @type {ChatErrorInfo} */ error) => this._onServerError(error));
    for (const event of events) socket.on(event, (/** @type {any} */ data) => host.dispatch(event, data));
  }

  close() {
    this._clearFallbackTimer();
    this.socket?.disconnect();
  }

  /**
   * One operation over the socket: its ack without `ok`; a refusal is thrown as the
   * server's ChatError, no ack in time as ChatError('OFFLINE'). An operation declared
   * `noAck` is only emitted.
   * @param {string} name @param {Record<string, unknown>} payload
   * @returns {Promise<any>}
   */
  async call(name, payload) {
    const socket = this.socket;
    if (!socket) throw new ChatError('OFFLINE', 'not connected');
    const { event, data, ack } = socketRequest(name, payload);
    if (!ack) {
      socket.emit(event, data);
      return undefined;
    }
    let reply;
    try {
      reply = await socket.timeout(this._host.options.ackTimeoutMs).emitWithAck(event, data);
    } catch {
      throw new ChatError('OFFLINE', 'no acknowledgement in time');
    }
    if (isObject(reply) && reply.ok) {
      const { ok, ...result } = reply;
      return result;
    }
    const error = isObject(reply) && isObject(reply.error) ? reply.error : {};
    throw new ChatError(error.code || 'INTERNAL', error.message || 'bad reply');
  }

  /** Connect again soon, unless closed or connected meanwhile. @param {number} delay */
  _reconnectAfter(delay) {
    setTimeout(() => {
      if (!this._host.closed() && this.socket && !this.socket.connected) this.socket.connect();
    }, delay);
  }

  _armFallbackTimer() {
    this._clearFallbackTimer();
    if (!this._host.canFallBack) return;
    this._fallbackTimer = setTimeout(() => {
      this._fallbackTimer = null;
      if (!this.ready) this._host.onUnreachable();
    }, this._host.options.fallbackAfterMs);
  }

  _clearFallbackTimer() {
    if (this._fallbackTimer !== null) clearTimeout(this._fallbackTimer);
    this._fallbackTimer = null;
  }

  /** @param {Identity} identity */
  _onAuthenticated(identity) {
    this._authRefusals = 0;
    const refresh = this.ready;
    this.ready = true;
    this.refreshing = false;
    this._clearFallbackTimer();
    this._host.onReady({ userId: identity.userId, name: identity.name }, refresh);
  }

  /** @param {Error & {data?: any}} error */
  _onConnectError(error) {
    const host = this._host;
    if (host.closed()) return;
    const data = isObject(error.data) ? error.data : null;
    if (data && data.code === 'AUTH_FAILED') {
      // The handshake refused the token; socket.io-client will not retry by itself.
      this._authRefusals += 1;
      host.tokens.forget();
      if (!host.tokens.canRefresh || this._authRefusals > MAX_AUTH_REFUSALS) {
        const refusal = { code: 'AUTH_FAILED', message: data.message || error.message, event: null };
        host.emit('error', refusal);
        host.onUnauthorized(refusal);
        return;
      }
      this._reconnectAfter(host.retryDelay(this._authRefusals));
      return;
    }
    this._connectErrors += 1;
    host.onConnectFailed();
    if (this._connectErrors >= host.options.fallbackAfterErrors) host.onUnreachable();
  }

  /** @param {string} reason */
  _onDisconnect(reason) {
    this.ready = false;
    this.refreshing = false;
    if (this._host.closed()) return;
    this._host.onDown();
    this._armFallbackTimer();
    // The server ended the session (e.g. no token in time): socket.io-client does
    // not reconnect after that by itself.
    if (reason === 'io server disconnect') this._reconnectAfter(this._host.retryDelay(1));
  }

  /** @param {ChatErrorInfo} error */
  _onServerError(error) {
    if (!isObject(error)) return;
    if (error.code === 'TOKEN_EXPIRED') {
      this._refreshAfterExpiry();
      return;
    }
    this._host.emit('error', error);
  }

  /** The server said our token expired: authenticate the same socket with a new one. */
  async _refreshAfterExpiry() {
    const host = this._host;
    if (!this.socket || this.refreshing) return;
    this.refreshing = true;
    host.tokens.forget();
    if (!host.tokens.canRefresh) {
      const refusal = { code: 'TOKEN_EXPIRED', message: 'the token expired and there is no getToken', event: null };
      host.emit('error', refusal);
      host.onUnauthorized(refusal);
      return;
    }
    /** @param {unknown} error */
    const failed = (error) => {
      this.refreshing = false;
      host.emit('error', { code: 'AUTH_FAILED', message: `token refresh failed: ${String(error)}`, event: 'authenticate' });
    };
    let token;
    try {
      token = await host.tokens.current();
    } catch (error) {
      failed(error);
      return;
    }
    try {
      // On success the server also emits `authenticated`, which resumes the outbox.
      await this.call('authenticate', { token });
    } catch (error) {
      // Refused (not OFFLINE, which only this client says): the outbox stays paused.
      if (error instanceof ChatError && error.code !== 'OFFLINE') {
        host.emit('error', { code: error.code, message: error.message, event: 'authenticate' });
      } else {
        failed(error);
      }
    }
  }
}
