// ChatManager: the browser client of the ecigdis-ws chat server.
//
// One object per page. It keeps a Socket.IO connection (socket.io-client v4, with
// its own reconnect backoff, jittered so that a fleet of pages does not come back in
// lock-step after a server restart) and, when the socket cannot get through, carries on
// over the server's REST API and long-poll (`/api/messenger/...`); it goes back to
// the socket as soon as that connects again. Whatever the transport:
//   - every open conversation is rejoined with `since` = the highest message id
//     seen, so nothing sent meanwhile is missed; a join the server answers
//     `resync: true` (it replays at most REPLAY_MAX_MESSAGES) pages the rest from
//     REST history, in order, before the join resolves;
//   - messages are delivered once each (duplicates are dropped by `id`);
//   - sends made while offline are queued and retried with the SAME `messageId`,
//     which the server stores exactly once;
//   - an expired token is replaced through `getToken` and the session carries on;
//   - typing events are throttled.
//
// The page listens with `on(event, listener)`; see the README for the events.
//
// This module is the facade: the public API, the connection state, and which
// transport carries the session. The work is in modules of its own: operations.js
// (each operation's socket event and REST form, declared once), socket-transport.js
// and http-transport.js (`call()` and their lifecycles), outbox.js, conversations.js
// and presence.js.

import { Conversations } from './conversations.js';
import { Emitter } from './emitter.js';
import { ChatError } from './errors.js';
import { HttpTransport } from './http-transport.js';
import { Outbox } from './outbox.js';
import { Presence } from './presence.js';
import { SocketTransport } from './socket-transport.js';
import { TokenSource } from './tokens.js';
import { httpBase, identityFromToken, isObject, jittered, newMessageId } from './util.js';

export { ChatError };

// The public shapes (types.js), under this module's name for the package's .d.ts.
/**
 * @typedef {import('./types.js').UserId} UserId
 * @typedef {import('./types.js').ClientMessageId} ClientMessageId
 * @typedef {import('./types.js').ChatMessage} ChatMessage
 * @typedef {import('./types.js').ReactionCount} ReactionCount
 * @typedef {import('./types.js').SendAck} SendAck
 * @typedef {import('./types.js').OutgoingStatus} OutgoingStatus
 * @typedef {import('./types.js').OutgoingEvent} OutgoingEvent
 * @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo
 * @typedef {import('./types.js').TypingEvent} TypingEvent
 * @typedef {import('./types.js').ReadEvent} ReadEvent
 * @typedef {import('./types.js').ReactionEvent} ReactionEvent
 * @typedef {import('./types.js').PresenceEvent} PresenceEvent
 * @typedef {import('./types.js').MemberEvent} MemberEvent
 * @typedef {import('./types.js').ConversationAddedEvent} ConversationAddedEvent
 * @typedef {import('./types.js').ConversationRemovedEvent} ConversationRemovedEvent
 * @typedef {import('./types.js').ConversationUpdatedEvent} ConversationUpdatedEvent
 * @typedef {import('./types.js').ConversationUpdate} ConversationUpdate
 * @typedef {import('./types.js').JoinResult} JoinResult
 * @typedef {import('./types.js').ConnectionState} ConnectionState
 * @typedef {import('./types.js').StateEvent} StateEvent
 * @typedef {import('./types.js').Identity} Identity
 * @typedef {import('./types.js').ChatEvents} ChatEvents
 * @typedef {import('./types.js').ChatManagerOptions} ChatManagerOptions
 */

/** @typedef {SocketTransport | HttpTransport} Transport */

const DEFAULTS = {
  fallbackAfterErrors: 3,
  fallbackAfterMs: 10000,
  ackTimeoutMs: 10000,
  typingThrottleMs: 2000,
  typingIdleMs: 3000,
  pollTimeoutMs: 35000,
  retryDelayMs: 500,
  maxRetryDelayMs: 8000,
  reconnectDelayMs: 1000,
  maxReconnectDelayMs: 5000,
  // A server restart drops every page at once; with delays varied by ± half, their
  // reconnects spread over a second instead of arriving in one burst per back-off step.
  reconnectJitter: 0.5,
};

export class ChatManager extends Emitter {
  /** @param {ChatManagerOptions} [options] */
  constructor(options = {}) {
    super();
    const origin = globalThis.location ? globalThis.location.origin : '';
    /** @type {string} */
    this.wsServer = options.wsServer || origin;
    const fallback = options.httpFallback ?? true;
    /** @type {string | null} the REST API root, or null without a fallback */
    this.httpFallback = fallback === false ? null
      : typeof fallback === 'string' ? fallback.replace(/\/+$/, '')
        : `${httpBase(this.wsServer)}/api/messenger`;
    /** @type {string | null} */
    this.mainSiteUrl = options.mainSiteUrl ? options.mainSiteUrl.replace(/\/+$/, '') : null;
    this._options = { ...DEFAULTS, ...options };
    /** @type {Record<string, unknown>} socket.io-client's options: ours, socketOptions over them */
    this._ioOptions = {
      reconnectionDelay: this._options.reconnectDelayMs,
      reconnectionDelayMax: this._options.maxReconnectDelayMs,
      randomizationFactor: this._options.reconnectJitter,
      ...(this._options.socketOptions || {}),
    };
    const jitter = this._ioOptions.randomizationFactor;
    if (typeof jitter !== 'number' || !(jitter > 0 && jitter < 1)) {
      throw new RangeError(`reconnectJitter (socket.io's randomizationFactor) must be above 0 and below 1, not ${String(jitter)}: `
        + 'without it every page reconnects in the same instant after a server restart');
    }
    this._jitter = jitter;
    /** @type {typeof fetch} */
    const fetcher = options.fetch || ((input, init) => globalThis.fetch(input, init));
    const tokens = new TokenSource({
      token: options.token, getToken: options.getToken, mainSiteUrl: this.mainSiteUrl, fetch: fetcher,
    });
    this._tokens = tokens;

    /** @type {ConnectionState} */
    this.state = 'idle';
    /** @type {'websocket' | 'polling' | 'http' | null} the transport last announced */
    this._lastTransport = null;
    /** @type {Identity | null} who the server says we are */
    this.identity = null;

    const settings = this._options;
    /** @param {number} failures */
    const retryDelay = (failures) => this._retryDelay(failures);
    /** @param {string} event @param {any} data */
    const dispatch = (event, data) => this._dispatch(event, data);
    this._sockets = new SocketTransport({
      tokens, options: settings, canFallBack: this.httpFallback !== null, retryDelay, dispatch,
      closed: () => this.state === 'closed',
      emit: (event, data) => this._emit(event, data),
      onReady: (identity, refresh) => this._onSocketReady(identity, refresh),
      onDown: () => this._setState('offline'),
      onConnectFailed: () => {
        if (!this._http.running) this._setState('offline');
      },
      onUpgrade: () => {
        if (this.state === 'online') this._setState('online'); // announces the new transport
      },
      onUnauthorized: () => this._setState('unauthorized'),
      onUnreachable: () => this._enterFallback(),
    });
    this._http = new HttpTransport({
      base: this.httpFallback, tokens, fetch: fetcher, options: settings, retryDelay, dispatch,
      catchUp: (signal) => this._conversations.catchUpAll(signal),
      onCaughtUp: (signal) => this._onFallbackRunning(signal),
      onFailing: () => {
        if (this.state === 'fallback') this._setState('offline');
      },
      onResync: (cursor) => this._emit('resync', { cursor }),
    });
    this._conversations = new Conversations({
      socket: this._sockets, http: this._http, hasHttp: this.httpFallback !== null, retryDelay,
      emit: (event, data) => this._emit(event, data),
    });
    this._outbox = new Outbox({
      channel: () => this._sendChannel(), identity: () => this.identity, retryDelay,
      emit: (event, data) => this._emit(event, data),
      onSent: (message) => this._conversations.onMessage(message),
    });
    this._presence = new Presence({
      channel: () => this._active(), options: settings, emit: (event, data) => this._emit(event, data),
    });
    /**
     * The server's events, from the socket and the long-poll alike, and what the page
     * hears of each. A Map: an event name from the wire is never an Object property.
     * @type {Map<string, (data: any) => void>}
     */
    this._handlers = new Map(Object.entries({
      'message:new': (data) => this._conversations.onMessage(data),
      'typing:indicator': (data) => this._emit('typing', data),
      'message:read-receipt': (data) => this._emit('read', data),
      'message:reaction': (data) => this._emit('reaction', data),
      'user:online': (data) => this._presence.online(data),
      'user:offline': (data) => this._presence.offline(data),
      'user:joined': (data) => this._emit('joined', data),
      'user:left': (data) => this._emit('left', data),
      'member:removed': (data) => this._conversations.onMemberRemoved(data, this.identity),
      'conversation:added': (data) => this._onConversation('conversationAdded', data),
      'conversation:removed': (data) => this._conversations.onRemovedFrom(data),
      'conversation:updated': (data) => this._onConversation('conversationUpdated', data),
    }));
  }

  /** The socket.io-client socket, once connect() made it (for a look from the console). */
  get _socket() {
    return this._sockets.socket;
  }

  /** A server event, from the socket or the long-poll. @param {string} event @param {any} data */
  _dispatch(event, data) {
    this._handlers.get(event)?.(data);
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    const transport = state === 'fallback' ? 'http' : state === 'online' ? this._sockets.name : null;
    if (state === this.state && transport === this._lastTransport) return;
    this.state = state;
    this._lastTransport = transport;
    this._emit('state', { state, transport });
  }

  /** The transport the session runs on now: 'websocket', 'polling', 'http' or null. */
  get transport() {
    return this.state === 'fallback' ? 'http' : this.state === 'online' ? this._sockets.name : null;
  }

  // -- which transport --------------------------------------------------------------

  /** @returns {Transport | null} the transport that carries the session now */
  _active() {
    if (this._sockets.ready) return this._sockets;
    return this._http.running && this.state === 'fallback' ? this._http : null;
  }

  /** @returns {Transport | null} the one that may send and mark read now (not mid token refresh) */
  _sendChannel() {
    if (this.state === 'closed') return null;
    if (this._sockets.ready) return this._sockets.refreshing ? null : this._sockets;
    return this._active();
  }

  /**
   * One operation on the active transport; never queued.
   * @param {string} name @param {Record<string, unknown>} payload @returns {Promise<any>}
   */
  async _call(name, payload) {
    const transport = this._active();
    if (!transport) throw new ChatError('OFFLINE', 'not connected');
    return transport.call(name, payload);
  }

  /**
   * The wait before retry number `failures`: doubling from retryDelayMs up to
   * maxRetryDelayMs, jittered like the socket's reconnects.
   * @param {number} failures @returns {number}
   */
  _retryDelay(failures) {
    const delay = Math.min(this._options.retryDelayMs * 2 ** Math.max(0, failures - 1), this._options.maxRetryDelayMs);
    return jittered(delay, this._jitter);
  }

  // -- connecting -----------------------------------------------------------------

  /**
   * Start connecting. Resolves once the session runs (on the socket, or over HTTP when
   * the socket cannot connect); the manager keeps reconnecting by itself afterwards.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.state === 'closed') return Promise.reject(new ChatError('CLOSED', 'this ChatManager was closed'));
    if (this.state === 'online' || this.state === 'fallback') return Promise.resolve();
    const running = new Promise((resolve, reject) => {
      const stop = this.on('state', ({ state }) => {
        if (state === 'online' || state === 'fallback') {
          stop();
          resolve(undefined);
        } else if (state === 'unauthorized' || state === 'closed') {
          stop();
          reject(new ChatError('AUTH_FAILED', `cannot start: ${state}`));
        }
      });
    });
    if (this._sockets.socket) return running;
    this._setState('connecting');
    this._sockets.connect(this.wsServer, this._ioOptions, [...this._handlers.keys()]);
    return running;
  }

  /** Disconnect for good: the socket, the long-poll, the timers. Queued sends are refused. */
  close() {
    this._setState('closed');
    this._http.stop();
    this._sockets.close();
    this._presence.stopAll();
    const error = new ChatError('CLOSED', 'the ChatManager was closed');
    this._outbox.close(error);
    this._conversations.closeAll(error);
  }

  /** The socket is authenticated: it carries the session. @param {Identity} identity @param {boolean} refresh */
  _onSocketReady(identity, refresh) {
    this.identity = identity;
    this._http.stop();
    this._setState('online');
    this._emit('authenticated', identity);
    if (refresh) {
      this._outbox.kick(); // a fresh token on a live socket: its rooms are kept
      return;
    }
    this._resyncSocket();
  }

  /** Rejoin every open conversation with `since`, send pending read marks, then the outbox. */
  async _resyncSocket() {
    await this._conversations.rejoinAll();
    await this._conversations.sendReads(this._sockets, () => this._sockets.ready);
    this._outbox.kick();
  }

  _enterFallback() {
    if (!this.httpFallback || this._http.running || this._sockets.ready || this.state === 'closed') return;
    if (this.state === 'unauthorized') return;
    this._http.start();
  }

  /** The fallback caught up: it carries the session until the socket is back. @param {AbortSignal} signal */
  async _onFallbackRunning(signal) {
    if (!this.identity && this._tokens.token) this.identity = identityFromToken(this._tokens.token);
    this._setState('fallback');
    this._presence.refresh(this._http, signal);
    await this._conversations.sendReads(this._http);
    this._outbox.kick();
  }

  /**
   * We became a member (the page decides whether to join it), or a member renamed one.
   * @param {'conversationAdded' | 'conversationUpdated'} event @param {any} data
   */
  _onConversation(event, data) {
    if (isObject(data) && Number.isSafeInteger(data.conversationId)) this._emit(event, /** @type {any} */ (data));
  }

  // -- conversations and messages ------------------------------------------------------

  /**
   * Join a conversation and keep it joined across reconnects. The first join replays
   * the messages after `since` (none when not given; 0 replays them all); a rejoin
   * always replays from the highest id seen.
   * @param {number} conversationId
   * @param {{since?: number}} [options]
   * @returns {Promise<JoinResult>}
   */
  join(conversationId, options = {}) {
    const [conversation, joined] = this._conversations.open(conversationId, options.since);
    // A room to enter on the socket; over HTTP the long-poll carries every
    // conversation of ours, so a join there is a history catch-up.
    const transport = this._active();
    if (transport === this._sockets) {
      this._conversations.joinRoom(conversation);
    } else if (transport === this._http && this._http.signal) {
      this._conversations.catchUp(conversation, this._http.signal).catch(() => {
        // the loop's next catch-up retries it
      });
    }
    return joined;
  }

  /**
   * Leave a conversation's room; it is no longer rejoined.
   * @param {number} conversationId
   */
  leave(conversationId) {
    this._conversations.close(conversationId);
    this._presence.stopTyping(conversationId, true);
    if (this._sockets.ready) this._sockets.call('conversation:leave', { conversationId });
  }

  /**
   * Send a message. It is queued while offline and retried with the same messageId
   * until the server stores it (once). `outgoing` events follow its status.
   * @param {number} conversationId
   * @param {string} text
   * @param {{messageId?: ClientMessageId}} [options]
   * @returns {Promise<SendAck>}
   */
  send(conversationId, text, options = {}) {
    this._presence.stopTyping(conversationId, false); // the server ends our typing on send
    return this._outbox.send(conversationId, text, options.messageId ?? newMessageId());
  }

  /** Messages waiting to be stored, oldest first. @returns {OutgoingEvent[]} */
  get pending() {
    return this._outbox.pending;
  }

  /**
   * Mark a conversation read up to a message (its server id). Kept and sent on
   * reconnect when offline; the server never moves a read mark back.
   * @param {number} conversationId
   * @param {number} messageId
   * @returns {Promise<void>}
   */
  async markRead(conversationId, messageId) {
    const conversation = this._conversations.markRead(conversationId, messageId);
    const transport = this._sendChannel();
    if (transport) await this._conversations.sendRead(conversation, transport);
  }

  /**
   * Toggle our emoji on a message. Not queued (a toggle repeated would undo itself).
   * @param {number} conversationId
   * @param {number} messageId
   * @param {string} emoji
   * @returns {Promise<{action: 'added' | 'removed'}>}
   */
  async react(conversationId, messageId, emoji) {
    const { action } = await this._call('message:react', { conversationId, messageId, emoji });
    return { action };
  }

  /**
   * Rename a conversation (any member may). Not queued. The other members hear
   * `conversationUpdated`; the same title again resolves `changed: false`.
   * @param {number} conversationId
   * @param {{title: string}} changes
   * @returns {Promise<ConversationUpdate>}
   */
  async updateConversation(conversationId, changes) {
    return this._call('conversation:update', { conversationId, title: changes.title });
  }

  // -- typing and presence ------------------------------------------------------------

  /**
   * Call on every keystroke: sends typing:start at most every typingThrottleMs, and
   * typing:stop after typingIdleMs without a call. Over the socket, or on the HTTP
   * fallback as POST /conversations/{id}/typing.
   * @param {number} conversationId
   */
  typing(conversationId) {
    this._presence.typing(conversationId);
  }

  /** Say at once that we stopped typing. @param {number} conversationId */
  stopTyping(conversationId) {
    this._presence.stopTyping(conversationId, true);
  }

  /**
   * Who is online: everyone, or one conversation's members. Over the socket, or
   * on the HTTP fallback as GET /presence.
   * @param {number} [conversationId]
   * @returns {Promise<{users: Identity[], count: number}>}
   */
  requestPresence(conversationId) {
    return this._presence.request(conversationId);
  }

  // -- REST-only helpers (work whether or not the socket is up) ---------------------

  /**
   * My conversations with unread counts (REST).
   * @returns {Promise<any[]>}
   */
  async conversations() {
    const body = await this._http.call('conversations:list', {});
    return Array.isArray(body) ? body : Array.isArray(body.conversations) ? body.conversations : [];
  }

  /**
   * Create a conversation (REST); I am a member of it.
   * @param {string} title
   * @param {UserId[]} members
   * @returns {Promise<any>}
   */
  async createConversation(title, members) {
    return this._http.call('conversation:create', { title, members });
  }

  /**
   * A page of older messages (REST), oldest first, each with its `reactions`; also
   * marks them seen, so a replay does not deliver them again. The members' read
   * positions that come with the page are emitted as `read` events.
   * @param {number} conversationId
   * @param {{before?: number, limit?: number}} [options]
   * @returns {Promise<ChatMessage[]>}
   */
  history(conversationId, options = {}) {
    return this._conversations.history(conversationId, options);
  }
}

export default ChatManager;
