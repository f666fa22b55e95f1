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

import { io } from 'socket.io-client';

/**
 * @typedef {number | string} UserId
 * @typedef {number | string} ClientMessageId
 *
 * @typedef {object} ChatMessage  A stored message (`message:new`).
 * @property {number} id                 the server's id, growing within a conversation
 * @property {ClientMessageId} messageId the sender's own id
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {string} senderName
 * @property {string} text
 * @property {string} createdAt          ISO-8601 UTC with milliseconds
 * @property {ReactionCount[]} [reactions] the reactions on it when it was read from history
 *                                       (a REST page, a replay with `since`, the long-poll);
 *                                       absent on a live message, which has none yet. Later
 *                                       `reaction` events apply on top (set semantics per user).
 *
 * @typedef {object} ReactionCount  One emoji on a message, in the order of first use.
 * @property {string} emoji
 * @property {number} count
 * @property {UserId[]} userIds          who has it on, in the order they put it on
 *
 * @typedef {object} SendAck  What `send()` resolves with once the server stored the message.
 * @property {ClientMessageId} messageId
 * @property {'sent'} status
 * @property {number} id
 * @property {number} conversationId
 * @property {string} createdAt
 * @property {boolean} [duplicate]       true when an earlier attempt had stored it already
 *
 * @typedef {'queued' | 'sending' | 'sent' | 'failed'} OutgoingStatus
 *
 * @typedef {object} OutgoingEvent  A message of ours changing state (`outgoing` event).
 * @property {ClientMessageId} messageId
 * @property {number} conversationId
 * @property {string} text
 * @property {OutgoingStatus} status
 * @property {number} [id]               the server id, once sent
 * @property {ChatErrorInfo} [error]     why it failed, when failed
 *
 * @typedef {object} ChatErrorInfo
 * @property {string} code               UNAUTHENTICATED, AUTH_FAILED, TOKEN_EXPIRED, INVALID_PAYLOAD,
 *                                       FORBIDDEN, NOT_FOUND, RATE_LIMITED, UNAVAILABLE, INTERNAL,
 *                                       or OFFLINE (this client could not reach the server)
 * @property {string} message
 * @property {string | null} [event]     the client event that failed
 *
 * @typedef {object} TypingEvent
 * @property {number} conversationId
 * @property {UserId} userId
 * @property {boolean} isTyping
 *
 * @typedef {object} ReadEvent  Someone read a conversation up to a message: live
 *   (`message:read-receipt`), or a member's read position as a join or a history page
 *   reported it (a position never moves back, so keep the highest).
 * @property {number} conversationId
 * @property {number} messageId
 * @property {UserId} userId
 * @property {string | null} readAt      null for a position older than the server's record of it
 *
 * @typedef {object} ReactionEvent
 * @property {number} conversationId
 * @property {number} messageId
 * @property {UserId} userId
 * @property {string} emoji
 * @property {'added' | 'removed'} action
 *
 * @typedef {object} PresenceEvent  `user:online` / `user:offline`.
 * @property {UserId} userId
 * @property {boolean} online
 * @property {string} [name]
 * @property {string} [lastSeen]
 *
 * @typedef {object} MemberEvent  `user:joined` / `user:left` a conversation room.
 * @property {number} conversationId
 * @property {UserId} userId
 *
 * @typedef {object} ConversationAddedEvent  We became a member (`conversation:added`).
 * @property {number} conversationId
 * @property {string} title
 * @property {UserId[]} members           every member, us included
 * @property {UserId | null} addedBy      who created it with us in it; null: the main site added us
 *
 * @typedef {object} ConversationRemovedEvent  We are no longer a member (`conversation:removed`).
 * @property {number} conversationId
 * @property {UserId | null} removedBy    null: the main site removed us
 *
 * @typedef {'idle' | 'connecting' | 'online' | 'fallback' | 'offline' | 'unauthorized' | 'closed'} ConnectionState
 *
 * @typedef {object} StateEvent
 * @property {ConnectionState} state     online: socket; fallback: REST + long-poll; offline: neither yet
 * @property {'websocket' | 'polling' | 'http' | null} transport
 *
 * @typedef {object} Identity
 * @property {UserId} userId
 * @property {string} name
 *
 * @typedef {object} ChatEvents  Event name → listener argument.
 * @property {StateEvent} state
 * @property {Identity} authenticated
 * @property {ChatMessage} message
 * @property {OutgoingEvent} outgoing
 * @property {TypingEvent} typing
 * @property {ReadEvent} read
 * @property {ReactionEvent} reaction
 * @property {PresenceEvent} presence
 * @property {MemberEvent} joined
 * @property {MemberEvent} left
 * @property {MemberEvent} removed  the main site removed a member (maybe us) from a conversation
 * @property {ConversationAddedEvent} conversationAdded  we became a member of a conversation
 * @property {ConversationRemovedEvent} conversationRemoved  we were removed from a conversation
 * @property {{cursor: string | null}} resync  the long-poll's cursor was older than the server
 *                                       keeps: missed messages came from history
 * @property {ChatErrorInfo} error
 *
 * @typedef {object} ChatManagerOptions
 * @property {string} [wsServer]         the chat server, e.g. 'https://chat.example.com'
 *                                       (http/https/ws/wss); default: this page's origin
 * @property {string | boolean} [httpFallback] the REST API root; default
 *                                       `<wsServer as http(s)>/api/messenger`; false: no fallback
 * @property {string} [mainSiteUrl]      the portal; without `token`/`getToken`, tokens come from
 *                                       GET `<mainSiteUrl>/api/messenger/token` (`{ token }`,
 *                                       with the portal's cookies)
 * @property {string} [token]            a JWT to start with
 * @property {() => (string | Promise<string>)} [getToken] returns a fresh JWT; called at start
 *                                       without `token`, on TOKEN_EXPIRED and on a refused token
 * @property {number} [fallbackAfterErrors] socket connect errors in a row before falling back to
 *                                       HTTP (default 3)
 * @property {number} [fallbackAfterMs]  ...or this long without a socket connection (default 10000)
 * @property {number} [ackTimeoutMs]     an event unanswered this long is retried (default 10000)
 * @property {number} [typingThrottleMs] at most one typing:start per conversation this often
 *                                       (default 2000; the server's typing lasts 6000)
 * @property {number} [typingIdleMs]     typing:stop after this long without typing() (default 3000)
 * @property {number} [pollTimeoutMs]    a long-poll is abandoned after this long (default 35000;
 *                                       the server holds one up to 25 s)
 * @property {number} [retryDelayMs]     first retry delay of a failed HTTP call or send (default 500)
 * @property {number} [maxRetryDelayMs]  retry delays double up to this (default 8000)
 * @property {number} [reconnectDelayMs] first socket reconnect delay (default 1000; socket.io's
 *                                       reconnectionDelay)
 * @property {number} [maxReconnectDelayMs] reconnect delays double up to this (default 5000;
 *                                       socket.io's reconnectionDelayMax)
 * @property {number} [reconnectJitter]  every reconnect and retry delay varies by up to ± this
 *                                       share of itself, at random (default 0.5; above 0, below
 *                                       1; socket.io's randomizationFactor)
 * @property {Record<string, unknown>} [socketOptions] passed to socket.io-client's io(), e.g.
 *                                       { transports: ['websocket'], reconnectionDelayMax: 5000 }
 * @property {typeof fetch} [fetch]      fetch to use for HTTP (default globalThis.fetch)
 */

/**
 * @typedef {object} Pending  A send in the outbox.
 * @property {ClientMessageId} messageId
 * @property {number} conversationId
 * @property {string} text
 * @property {OutgoingStatus} status
 * @property {number} attempts
 * @property {(ack: SendAck) => void} resolve
 * @property {(error: ChatError) => void} reject
 *
 * @typedef {object} Conversation  What this client knows of one conversation.
 * @property {number} id
 * @property {boolean} open              joined by the page (and not left)
 * @property {number | null} highest     highest message id seen
 * @property {number | undefined} since  `since` of the first join, before anything was seen
 * @property {Set<number>} seen          ids delivered, to drop repeats
 * @property {number} catchingUp         history catch-ups in progress after a capped join
 * @property {ChatMessage[]} held        live messages that came meanwhile, delivered after
 * @property {number | null} readUpTo    a read mark not yet sent
 * @property {Array<{resolve: (value: JoinResult) => void, reject: (error: ChatError) => void}>} waiters
 *
 * @typedef {object} JoinResult
 * @property {number} conversationId
 * @property {UserId[]} onlineUserIds    empty over HTTP (ask requestPresence(conversationId) there)
 * @property {ReadEvent[]} reads         each member's read position (also emitted as `read`)
 *
 * @typedef {{ kind: 'sent', ack: SendAck } | { kind: 'retry', error: ChatErrorInfo }
 *   | { kind: 'failed', error: ChatErrorInfo }} Attempt
 */

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
// Codes after which the same request may succeed later; every other failure is final.
const RETRYABLE = new Set(['UNAVAILABLE', 'RATE_LIMITED', 'OFFLINE', 'UNAUTHENTICATED', 'TOKEN_EXPIRED']);
// How many ids per conversation are remembered to drop repeats; older ones are below
// every `since` the client will ask with, so the server does not send them again.
const SEEN_LIMIT = 5000;
// Refused handshakes in a row (each with a fresh token) before giving up.
const MAX_AUTH_REFUSALS = 3;
// Messages per REST history page when catching up (the server allows up to 500):
// a capped join's rest, 49,000 messages, is 98 requests, not 490.
const HISTORY_PAGE = 500;

/** An error with the server's error code. */
/**
 * Note a message id as delivered; past SEEN_LIMIT the id remembered longest ago is
 * forgotten (a Set keeps insertion order), so each message costs O(1), however long
 * the page stays open.
 * @param {Set<number>} seen @param {number} id
 */
function remember(seen, id) {
  if (seen.has(id)) return;
  seen.add(id);
  if (seen.size > SEEN_LIMIT) {
    const oldest = seen.values().next();
    if (!oldest.done) seen.delete(oldest.value);
  }
}

export class ChatError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {number} [status] the HTTP status, for errors from the REST API
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    this.status = status;
  }
}

/** @returns {string} a new client message id */
function newMessageId() {
  const cryptoApi = globalThis.crypto;
  if (cryptoApi && typeof cryptoApi.randomUUID === 'function') return cryptoApi.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal] ends the wait early
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });
}

/**
 * The claims of a JWT, unverified: only to show who we are while the socket is down.
 * @param {string} token
 * @returns {Record<string, unknown>}
 */
function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/**
 * @param {string} url
 * @returns {string} the same URL with http(s) in place of ws(s), without a trailing slash
 */
function httpBase(url) {
  return url.replace(/^ws(s?):/i, 'http$1:').replace(/\/+$/, '');
}

/**
 * `delay` varied by up to ± `jitter` of itself, as socket.io-client varies its reconnect
 * delays: pages that failed together do not all retry in the same instant.
 * @param {number} delay @param {number} jitter @returns {number}
 */
function jittered(delay, jitter) {
  return Math.max(0, Math.round(delay * (1 + jitter * (2 * Math.random() - 1))));
}

/** @param {unknown} value @returns {value is Record<string, any>} */
function isObject(value) {
  return typeof value === 'object' && value !== null;
}

export class ChatManager {
  /** @param {ChatManagerOptions} [options] */
  constructor(options = {}) {
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
    /** @type {string | null} */
    this._token = options.token || null;
    /** @type {(() => (string | Promise<string>)) | null} */
    this._getToken = options.getToken || null;
    /** @type {typeof fetch} */
    this._fetch = options.fetch || ((input, init) => globalThis.fetch(input, init));

    /** @type {Map<string, Set<(data: any) => void>>} */
    this._listeners = new Map();
    /** @type {Map<number, Conversation>} */
    this._conversations = new Map();
    /** @type {Pending[]} */
    this._outbox = [];
    /** @type {Map<number, {timer: ReturnType<typeof setTimeout> | null, lastStart: number}>} */
    this._typing = new Map();

    /** @type {ConnectionState} */
    this.state = 'idle';
    /** @type {'websocket' | 'polling' | 'http' | null} the transport last announced */
    this._lastTransport = null;
    /** @type {Identity | null} who the server says we are */
    this.identity = null;
    /** @type {import('socket.io-client').Socket | null} */
    this._socket = null;
    this._socketReady = false; // connected and authenticated
    this._refreshing = false; // a TOKEN_EXPIRED refresh is under way
    this._connectErrors = 0;
    this._authRefusals = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._fallbackTimer = null;
    /** @type {'socket' | 'http' | null} which transport carries the session */
    this._mode = null;
    /** @type {AbortController | null} aborts the HTTP loop when the socket is back */
    this._httpAbort = null;
    /** @type {AbortController} wakes the outbox from its retry wait */
    this._wake = new AbortController();
    this._pumping = false;
    /** @type {Promise<string> | null} */
    this._tokenRequest = null;
  }

  // -- events ---------------------------------------------------------------------

  /**
   * Listen to an event; returns a function that removes the listener.
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {(data: ChatEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {(data: ChatEvents[K]) => void} listener
   */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * @template {keyof ChatEvents} K
   * @param {K} event
   * @param {ChatEvents[K]} data
   */
  _emit(event, data) {
    for (const listener of [...(this._listeners.get(event) || [])]) {
      try {
        listener(data);
      } catch (error) {
        // A page's listener must not break the client.
        setTimeout(() => { throw error; });
      }
    }
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    const transport = state === 'fallback' ? 'http'
      : state === 'online' ? this._transportName() : null;
    if (state === this.state && transport === this._lastTransport) return;
    this.state = state;
    this._lastTransport = transport;
    this._emit('state', { state, transport });
  }

  /** @returns {'websocket' | 'polling' | null} */
  _transportName() {
    const engine = this._socket?.io.engine;
    const name = engine?.transport?.name;
    return name === 'websocket' || name === 'polling' ? name : null;
  }

  /** The transport the session runs on now: 'websocket', 'polling', 'http' or null. */
  get transport() {
    return this.state === 'fallback' ? 'http' : this.state === 'online' ? this._transportName() : null;
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
    if (this._socket) return running;
    this._setState('connecting');
    const socket = io(this.wsServer, {
      // Each (re)connection asks for the token anew, so a refreshed one is used.
      auth: (cb) => {
        this._currentToken().then(
          (token) => cb({ token }),
          (error) => {
            this._emit('error', { code: 'AUTH_FAILED', message: `no token: ${error.message}`, event: null });
            cb({});
          },
        );
      },
      ...this._ioOptions,
    });
    this._socket = socket;
    this._armFallbackTimer();

    socket.on('connect', () => {
      this._connectErrors = 0;
      socket.io.engine.on('upgrade', () => {
        if (this.state === 'online') this._setState('online');
      });
    });
    socket.on('authenticated', (/** @type {Identity} */ identity) => this._onAuthenticated(identity));
    socket.on('connect_error', (/** @type {Error & {data?: any}} */ error) => this._onConnectError(error));
    socket.on('disconnect', (/** @type {string} */ reason) => this._onDisconnect(reason));
    socket.on('error', (/** @type {ChatErrorInfo} */ error) => this._onServerError(error));
    socket.on('message:new', (/** @type {ChatMessage} */ message) => this._onMessage(message));
    socket.on('typing:indicator', (/** @type {TypingEvent} */ data) => this._emit('typing', data));
    socket.on('message:read-receipt', (/** @type {ReadEvent} */ data) => this._emit('read', data));
    socket.on('message:reaction', (/** @type {ReactionEvent} */ data) => this._emit('reaction', data));
    socket.on('user:online', (/** @type {{userId: UserId, name: string}} */ data) => {
      this._emit('presence', { userId: data.userId, name: data.name, online: true });
    });
    socket.on('user:offline', (/** @type {{userId: UserId, lastSeen: string}} */ data) => {
      this._emit('presence', { userId: data.userId, lastSeen: data.lastSeen, online: false });
    });
    socket.on('user:joined', (/** @type {MemberEvent} */ data) => this._emit('joined', data));
    socket.on('user:left', (/** @type {MemberEvent} */ data) => this._emit('left', data));
    socket.on('member:removed', (/** @type {MemberEvent} */ data) => this._onRemoved(data));
    socket.on('conversation:added', (/** @type {ConversationAddedEvent} */ data) => this._onConversationAdded(data));
    socket.on('conversation:removed', (/** @type {ConversationRemovedEvent} */ data) => this._onConversationRemoved(data));
    return running;
  }

  /** Disconnect for good: the socket, the long-poll, the timers. Queued sends are refused. */
  close() {
    this._setState('closed');
    this._clearFallbackTimer();
    this._httpAbort?.abort();
    this._wake.abort();
    this._socket?.disconnect();
    for (const [conversationId] of this._typing) this._clearTyping(conversationId);
    const error = new ChatError('CLOSED', 'the ChatManager was closed');
    for (const item of this._outbox.splice(0)) item.reject(error);
    for (const conversation of this._conversations.values()) {
      for (const waiter of conversation.waiters.splice(0)) waiter.reject(error);
    }
  }

  _armFallbackTimer() {
    this._clearFallbackTimer();
    if (!this.httpFallback) return;
    this._fallbackTimer = setTimeout(() => {
      this._fallbackTimer = null;
      if (!this._socketReady) this._enterFallback();
    }, this._options.fallbackAfterMs);
  }

  _clearFallbackTimer() {
    if (this._fallbackTimer !== null) clearTimeout(this._fallbackTimer);
    this._fallbackTimer = null;
  }

  /** @param {Identity} identity */
  _onAuthenticated(identity) {
    this.identity = { userId: identity.userId, name: identity.name };
    this._authRefusals = 0;
    const refresh = this._socketReady; // a fresh token on a live socket: rooms are kept
    this._socketReady = true;
    this._refreshing = false;
    this._clearFallbackTimer();
    this._leaveFallback();
    this._mode = 'socket';
    this._setState('online');
    this._emit('authenticated', this.identity);
    if (refresh) {
      this._kick();
      return;
    }
    this._resyncSocket();
  }

  /** @param {Error & {data?: any}} error */
  _onConnectError(error) {
    if (this.state === 'closed') return;
    const data = isObject(error.data) ? error.data : null;
    if (data && data.code === 'AUTH_FAILED') {
      // The handshake refused the token; socket.io-client will not retry by itself.
      this._authRefusals += 1;
      this._token = null;
      if (!this._canGetToken() || this._authRefusals > MAX_AUTH_REFUSALS) {
        this._emit('error', { code: 'AUTH_FAILED', message: data.message || error.message, event: null });
        this._setState('unauthorized');
        return;
      }
      const delay = this._retryDelay(this._authRefusals);
      setTimeout(() => {
        if (this.state !== 'closed' && this._socket && !this._socket.connected) this._socket.connect();
      }, delay);
      return;
    }
    this._connectErrors += 1;
    if (this._mode !== 'http') this._setState('offline');
    if (this._connectErrors >= this._options.fallbackAfterErrors) this._enterFallback();
  }

  /** @param {string} reason */
  _onDisconnect(reason) {
    this._socketReady = false;
    this._refreshing = false;
    if (this.state === 'closed') return;
    if (this._mode === 'socket') this._mode = null;
    this._setState('offline');
    this._armFallbackTimer();
    if (reason === 'io server disconnect') {
      // The server ended the session (e.g. no token in time): socket.io-client does
      // not reconnect after that by itself.
      setTimeout(() => {
        if (this.state !== 'closed' && this._socket && !this._socket.connected) this._socket.connect();
      }, this._retryDelay(1));
    }
  }

  /**
   * The main site removed someone from a conversation; when it is us, stop rejoining it.
   * @param {MemberEvent} data
   */
  _onRemoved(data) {
    if (!isObject(data)) return;
    if (this.identity && String(data.userId) === String(this.identity.userId)) {
      const conversation = this._conversations.get(Number(data.conversationId));
      if (conversation) conversation.open = false;
    }
    this._emit('removed', data);
  }

  /**
   * We became a member of a conversation (created with us in it, or added by the
   * main site): the page decides whether to join it.
   * @param {ConversationAddedEvent} data
   */
  _onConversationAdded(data) {
    if (!isObject(data) || !Number.isSafeInteger(data.conversationId)) return;
    this._emit('conversationAdded', data);
  }

  /**
   * We are no longer a member: the conversation is not rejoined (the server has
   * taken our sockets out of its room already).
   * @param {ConversationRemovedEvent} data
   */
  _onConversationRemoved(data) {
    if (!isObject(data) || !Number.isSafeInteger(data.conversationId)) return;
    const conversation = this._conversations.get(data.conversationId);
    if (conversation) conversation.open = false;
    this._emit('conversationRemoved', data);
  }

  /** @param {ChatErrorInfo} error */
  _onServerError(error) {
    if (!isObject(error)) return;
    if (error.code === 'TOKEN_EXPIRED') {
      this._refreshAfterExpiry();
      return;
    }
    this._emit('error', error);
  }

  async _refreshAfterExpiry() {
    const socket = this._socket;
    if (!socket || this._refreshing) return;
    this._refreshing = true;
    this._token = null;
    if (!this._canGetToken()) {
      this._emit('error', { code: 'TOKEN_EXPIRED', message: 'the token expired and there is no getToken', event: null });
      this._setState('unauthorized');
      return;
    }
    try {
      const token = await this._currentToken();
      const reply = await socket.timeout(this._options.ackTimeoutMs).emitWithAck('authenticate', { token });
      if (!reply || !reply.ok) {
        this._emit('error', { ...(reply?.error || { code: 'AUTH_FAILED', message: 'refused' }), event: 'authenticate' });
      }
      // On success the server also emits `authenticated`, which resumes the outbox.
    } catch (error) {
      this._refreshing = false;
      this._emit('error', { code: 'AUTH_FAILED', message: `token refresh failed: ${String(error)}`, event: 'authenticate' });
    }
  }

  _canGetToken() {
    return Boolean(this._getToken || this.mainSiteUrl);
  }

  /** @returns {Promise<string>} the token to use now, fetching one when there is none */
  async _currentToken() {
    if (this._token) return this._token;
    if (!this._tokenRequest) {
      this._tokenRequest = (async () => {
        try {
          let token;
          if (this._getToken) {
            token = await this._getToken();
          } else if (this.mainSiteUrl) {
            const response = await this._fetch(`${this.mainSiteUrl}/api/messenger/token`, { credentials: 'include' });
            if (!response.ok) throw new ChatError('AUTH_FAILED', `the portal answered ${response.status}`, response.status);
            token = (await response.json()).token;
          }
          if (typeof token !== 'string' || !token) throw new ChatError('AUTH_FAILED', 'no token to connect with');
          this._token = token;
          return token;
        } finally {
          this._tokenRequest = null;
        }
      })();
    }
    return this._tokenRequest;
  }

  /** Rejoin every open conversation with `since`, send pending read marks, then the outbox. */
  async _resyncSocket() {
    const socket = this._socket;
    for (const conversation of [...this._conversations.values()]) {
      if (!conversation.open || !this._socketReady || this._socket !== socket) continue;
      await this._joinSocket(conversation);
    }
    for (const conversation of this._conversations.values()) {
      if (conversation.readUpTo !== null && this._socketReady) await this._sendRead(conversation);
    }
    this._kick();
  }

  /** @param {Conversation} conversation */
  async _joinSocket(conversation) {
    const socket = this._socket;
    if (!socket) return;
    /** @type {{conversationId: number, since?: number}} */
    const data = { conversationId: conversation.id };
    const since = conversation.highest ?? conversation.since;
    if (since !== undefined && since !== null) data.since = since;
    let reply;
    try {
      reply = await socket.timeout(this._options.ackTimeoutMs).emitWithAck('conversation:join', data);
    } catch {
      return; // no answer (disconnected): the next connection rejoins
    }
    if (reply && reply.ok) {
      const reads = this._onReads(conversation.id, reply.reads);
      if (reply.resync === true && typeof reply.replayedUpTo === 'number'
          && !await this._pageRestOfJoin(conversation, reply.replayedUpTo, socket)) return;
      this._settleJoin(conversation, { conversationId: conversation.id, onlineUserIds: reply.onlineUserIds || [], reads });
    } else if (reply && !RETRYABLE.has(reply.error?.code)) {
      conversation.open = false;
      this._failJoin(conversation, reply.error);
    } else {
      // Worth another try on this connection (the database was busy, say).
      setTimeout(() => {
        if (conversation.open && this._socketReady && this._socket === socket) this._joinSocket(conversation);
      }, this._retryDelay(1));
    }
  }

  /**
   * The server replayed a join only up to `after` (its REPLAY_MAX_MESSAGES): the
   * rest comes from REST history, as the HTTP fallback catches up, page by page.
   * Live messages of the conversation that arrive meanwhile are held and delivered
   * after it, so the page sees every message in order and once. True when caught
   * up; false when the join was failed, or is tried again (then it settles later).
   * @param {Conversation} conversation @param {number} after
   * @param {import('socket.io-client').Socket} socket
   * @returns {Promise<boolean>}
   */
  async _pageRestOfJoin(conversation, after, socket) {
    const again = () => {
      if (conversation.open && this._socketReady && this._socket === socket) this._joinSocket(conversation);
    };
    if (!this.httpFallback) {
      // No REST API configured: the next join replays the next REPLAY_MAX_MESSAGES.
      again();
      return false;
    }
    conversation.catchingUp += 1;
    let caughtUp = false;
    try {
      await this._historyAfter(conversation, after);
      caughtUp = true;
      return true;
    } catch (error) {
      if (error instanceof ChatError && !RETRYABLE.has(error.code) && error.status !== undefined) {
        conversation.open = false;
        this._failJoin(conversation, { code: error.code, message: error.message });
      } else {
        setTimeout(again, this._retryDelay(1)); // rejoins from the highest id delivered
      }
      return false;
    } finally {
      conversation.catchingUp -= 1;
      if (conversation.catchingUp === 0) {
        // Caught up: the held messages follow. Not: they are dropped, as delivering
        // them would move `highest` past the gap; the rejoin replays them.
        const held = conversation.held.splice(0).sort((a, b) => a.id - b.id);
        if (caughtUp) for (const message of held) this._deliver(conversation, message);
      }
    }
  }

  /**
   * The read positions a join or a history page reported, emitted as `read` events,
   * so a page shows "Seen by" however it learnt of them.
   * @param {number} conversationId
   * @param {unknown} reads  `[{ userId, messageId, readAt }]` from the server
   * @returns {ReadEvent[]}
   */
  _onReads(conversationId, reads) {
    /** @type {ReadEvent[]} */
    const events = [];
    for (const read of Array.isArray(reads) ? reads : []) {
      if (!isObject(read) || typeof read.messageId !== 'number') continue;
      const event = { conversationId, messageId: read.messageId, userId: read.userId, readAt: read.readAt ?? null };
      events.push(event);
      this._emit('read', event);
    }
    return events;
  }

  /** @param {Conversation} conversation @param {JoinResult} result */
  _settleJoin(conversation, result) {
    for (const waiter of conversation.waiters.splice(0)) waiter.resolve(result);
  }

  /** @param {Conversation} conversation @param {ChatErrorInfo} error */
  _failJoin(conversation, error) {
    const failure = new ChatError(error?.code || 'INTERNAL', error?.message || 'join failed');
    for (const waiter of conversation.waiters.splice(0)) waiter.reject(failure);
  }

  // -- the HTTP fallback ----------------------------------------------------------

  _enterFallback() {
    if (!this.httpFallback || this._mode === 'http' || this._socketReady || this.state === 'closed') return;
    if (this.state === 'unauthorized') return;
    this._mode = 'http';
    const abort = new AbortController();
    this._httpAbort = abort;
    this._httpLoop(abort.signal);
  }

  _leaveFallback() {
    if (this._httpAbort) {
      this._httpAbort.abort();
      this._httpAbort = null;
    }
  }

  /**
   * While the socket is down: catch up every open conversation over REST, then
   * long-poll. Ends when `signal` aborts (the socket is back, or close()).
   * @param {AbortSignal} signal
   */
  async _httpLoop(signal) {
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
          await this._catchUpAllHttp(signal);
          if (signal.aborted) return; // the socket came back meanwhile
          caughtUp = true;
          failures = 0;
          if (!this.identity && this._token) this.identity = identityFromToken(this._token);
          this._setState('fallback');
          this._refreshPresenceHttp(signal);
          for (const conversation of this._conversations.values()) {
            if (conversation.readUpTo !== null) await this._sendRead(conversation);
          }
          this._kick();
        }
        const query = `cursor=${encodeURIComponent(cursor ?? '')}&live=${encodeURIComponent(live)}`;
        const body = await this._http('GET', `/poll?${query}`, undefined, {
          signal, timeoutMs: this._options.pollTimeoutMs,
        });
        if (signal.aborted) return;
        cursor = body.cursor ?? cursor;
        if (body.resync === true) {
          // The server no longer keeps the events back to our cursor (it was away
          // longer than the event log's retention): what was missed comes from
          // history, then the poll goes on from the cursor given with the answer.
          caughtUp = false; // should the catch-up fail, the next round starts over
          await this._catchUpAllHttp(signal);
          if (signal.aborted) return;
          caughtUp = true;
          this._emit('resync', { cursor });
        }
        if (typeof body.live === 'string') live = body.live;
        for (const item of Array.isArray(body.events) ? body.events : []) this._dispatch(item.event, item.data);
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        if (error instanceof ChatError && error.code === 'INVALID_PAYLOAD' && cursor !== null) {
          caughtUp = false; // a cursor the server no longer knows: start over
        }
        if (this.state === 'fallback' && failures > 1) this._setState('offline');
        if (failures > 1) caughtUp = false;
        await sleep(this._retryDelay(failures), signal);
      }
    }
  }

  /** @param {AbortSignal} signal @returns {Promise<{cursor: string | null, live: string}>} */
  async _pollCursor(signal) {
    // A poll without a cursor answers at once with the current one.
    const body = await this._http('GET', '/poll', undefined, { signal, timeoutMs: this._options.pollTimeoutMs });
    for (const item of Array.isArray(body.events) ? body.events : []) this._dispatch(item.event, item.data);
    const cursor = typeof body.cursor === 'string' ? body.cursor : body.cursor != null ? String(body.cursor) : null;
    return { cursor, live: typeof body.live === 'string' ? body.live : '' };
  }

  /**
   * On entering the fallback: who is online now (GET /presence), as `presence`
   * events; the long-poll's user:online and user:offline keep it current.
   * @param {AbortSignal} signal
   */
  async _refreshPresenceHttp(signal) {
    try {
      const body = await this._http('GET', '/presence', undefined, { signal });
      if (signal.aborted || !Array.isArray(body.users)) return;
      for (const user of body.users) this._emit('presence', { userId: user.userId, name: user.name, online: true });
    } catch {
      // presence is a nicety: the poll's user:online events still arrive
    }
  }

  /** Every open conversation caught up from REST history. @param {AbortSignal} signal */
  async _catchUpAllHttp(signal) {
    for (const conversation of [...this._conversations.values()]) {
      if (conversation.open) await this._catchUpHttp(conversation, signal);
    }
  }

  /** @param {Conversation} conversation @param {AbortSignal} signal */
  async _catchUpHttp(conversation, signal) {
    const since = conversation.highest ?? conversation.since;
    if (since === undefined || since === null) {
      this._settleJoin(conversation, { conversationId: conversation.id, onlineUserIds: [], reads: [] });
      return;
    }
    let reads;
    try {
      reads = await this._historyAfter(conversation, since, signal);
    } catch (error) {
      if (error instanceof ChatError && !RETRYABLE.has(error.code) && error.status !== undefined) {
        conversation.open = false;
        this._failJoin(conversation, { code: error.code, message: error.message });
        return;
      }
      throw error;
    }
    this._settleJoin(conversation, { conversationId: conversation.id, onlineUserIds: [], reads });
  }

  /**
   * Every message after `after` from REST history, page by page, delivered in order
   * (repeats dropped); the read positions of the last page.
   * @param {Conversation} conversation @param {number} after @param {AbortSignal} [signal]
   * @returns {Promise<ReadEvent[]>}
   */
  async _historyAfter(conversation, after, signal) {
    /** @type {ReadEvent[]} */
    let reads = [];
    for (;;) {
      const body = await this._http('GET', `/conversations/${conversation.id}/messages?since=${after}&limit=${HISTORY_PAGE}`, undefined, { signal });
      const messages = messagesOf(body).sort((a, b) => a.id - b.id);
      for (const message of messages) this._deliver(conversation, message);
      reads = this._onReads(conversation.id, body.reads);
      if (messages.length === 0 || (body.hasMore === undefined ? messages.length < HISTORY_PAGE : !body.hasMore)) break;
      after = messages[messages.length - 1].id;
    }
    return reads;
  }

  /**
   * A server event, from the socket or the long-poll.
   * @param {string} event
   * @param {any} data
   */
  _dispatch(event, data) {
    switch (event) {
      case 'message:new': this._onMessage(data); break;
      case 'typing:indicator': this._emit('typing', data); break;
      case 'message:read-receipt': this._emit('read', data); break;
      case 'message:reaction': this._emit('reaction', data); break;
      case 'user:online': this._emit('presence', { userId: data.userId, name: data.name, online: true }); break;
      case 'user:offline': this._emit('presence', { userId: data.userId, lastSeen: data.lastSeen, online: false }); break;
      case 'user:joined': this._emit('joined', data); break;
      case 'user:left': this._emit('left', data); break;
      case 'member:removed': this._onRemoved(data); break;
      case 'conversation:added': this._onConversationAdded(data); break;
      case 'conversation:removed': this._onConversationRemoved(data); break;
      default: break;
    }
  }

  /**
   * One REST call with the Bearer token; a refused token is refreshed once.
   * @param {string} method
   * @param {string} path   below the API root
   * @param {unknown} [body]
   * @param {{signal?: AbortSignal, timeoutMs?: number}} [options]
   * @returns {Promise<any>} the decoded JSON answer
   */
  async _http(method, path, body, options = {}) {
    if (!this.httpFallback) throw new ChatError('OFFLINE', 'no HTTP fallback configured');
    for (let attempt = 0; ; attempt += 1) {
      const token = await this._currentToken();
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(), options.timeoutMs ?? this._options.ackTimeoutMs);
      const onAbort = () => timeout.abort();
      options.signal?.addEventListener('abort', onAbort);
      let response;
      try {
        /** @type {Record<string, string>} */
        const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        response = await this._fetch(`${this.httpFallback}${path}`, {
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
          && attempt === 0 && this._canGetToken()) {
        this._token = null; // refresh once, then repeat the call
        continue;
      }
      throw new ChatError(code, typeof error.message === 'string' ? error.message : `HTTP ${response.status}`, response.status);
    }
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

  // -- messages -------------------------------------------------------------------

  /** @param {number} id @returns {Conversation} */
  _conversation(id) {
    let conversation = this._conversations.get(id);
    if (!conversation) {
      conversation = {
        id, open: false, highest: null, since: undefined, seen: new Set(), catchingUp: 0, held: [], readUpTo: null, waiters: [],
      };
      this._conversations.set(id, conversation);
    }
    return conversation;
  }

  /** @param {ChatMessage} message */
  _onMessage(message) {
    if (!isObject(message) || typeof message.id !== 'number') return;
    const conversation = this._conversation(Number(message.conversationId));
    if (conversation.catchingUp > 0) {
      conversation.held.push(message); // newer than the history being paged: after it
      return;
    }
    this._deliver(conversation, message);
  }

  /** Deliver a message once. @param {Conversation} conversation @param {ChatMessage} message */
  _deliver(conversation, message) {
    if (conversation.seen.has(message.id)) return;
    remember(conversation.seen, message.id);
    if (conversation.highest === null || message.id > conversation.highest) conversation.highest = message.id;
    this._emit('message', message);
  }

  /**
   * Join a conversation and keep it joined across reconnects. The first join replays
   * the messages after `since` (none when not given; 0 replays them all); a rejoin
   * always replays from the highest id seen.
   * @param {number} conversationId
   * @param {{since?: number}} [options]
   * @returns {Promise<JoinResult>}
   */
  join(conversationId, options = {}) {
    const conversation = this._conversation(conversationId);
    conversation.open = true;
    if (conversation.highest === null && options.since !== undefined) conversation.since = options.since;
    const joined = new Promise((resolve, reject) => conversation.waiters.push({ resolve, reject }));
    if (this._mode === 'socket' && this._socketReady) {
      this._joinSocket(conversation);
    } else if (this._mode === 'http' && this.state === 'fallback' && this._httpAbort) {
      this._catchUpHttp(conversation, this._httpAbort.signal).catch(() => {
        // the loop's next catch-up retries it
      });
    }
    return /** @type {Promise<JoinResult>} */ (joined);
  }

  /**
   * Leave a conversation's room; it is no longer rejoined.
   * @param {number} conversationId
   */
  leave(conversationId) {
    const conversation = this._conversation(conversationId);
    conversation.open = false;
    this._clearTyping(conversationId);
    if (this._socketReady && this._socket) this._socket.emit('conversation:leave', { conversationId });
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
    /** @type {Pending} */
    const item = /** @type {any} */ ({
      messageId: options.messageId ?? newMessageId(), conversationId, text, status: 'queued', attempts: 0,
    });
    const sent = new Promise((resolve, reject) => {
      item.resolve = resolve;
      item.reject = reject;
    });
    this._outbox.push(item);
    this._clearTyping(conversationId, false); // the server ends our typing on send
    this._outgoing(item);
    this._kick();
    return /** @type {Promise<SendAck>} */ (sent);
  }

  /** Messages waiting to be stored, oldest first. @returns {OutgoingEvent[]} */
  get pending() {
    return this._outbox.map((item) => ({
      messageId: item.messageId, conversationId: item.conversationId, text: item.text, status: item.status,
    }));
  }

  /** @param {Pending} item @param {{id?: number, error?: ChatErrorInfo}} [extra] */
  _outgoing(item, extra = {}) {
    this._emit('outgoing', {
      messageId: item.messageId, conversationId: item.conversationId, text: item.text, status: item.status, ...extra,
    });
  }

  _canSend() {
    if (this.state === 'closed') return false;
    if (this._mode === 'socket') return this._socketReady && !this._refreshing;
    return this._mode === 'http' && this.state === 'fallback';
  }

  /** Wake the outbox: send what is queued, or retry at once after a state change. */
  _kick() {
    this._wake.abort();
    this._wake = new AbortController();
    this._pump();
  }

  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      let failures = 0;
      while (this._outbox.length > 0 && this._canSend()) {
        const item = this._outbox[0];
        item.status = 'sending';
        item.attempts += 1;
        this._outgoing(item);
        const attempt = await this._transmit(item);
        if (attempt.kind === 'sent') {
          this._outbox.shift();
          failures = 0;
          item.status = 'sent';
          this._onMessage({
            id: attempt.ack.id,
            messageId: item.messageId,
            conversationId: item.conversationId,
            userId: this.identity ? this.identity.userId : '',
            senderName: this.identity ? this.identity.name : '',
            text: item.text,
            createdAt: attempt.ack.createdAt,
          });
          this._outgoing(item, { id: attempt.ack.id });
          item.resolve(attempt.ack);
        } else if (attempt.kind === 'failed') {
          this._outbox.shift();
          item.status = 'failed';
          this._outgoing(item, { error: attempt.error });
          item.reject(new ChatError(attempt.error.code, attempt.error.message));
        } else {
          failures += 1;
          item.status = 'queued';
          this._outgoing(item, { error: attempt.error });
          const wake = this._wake.signal;
          await sleep(this._retryDelay(failures), wake);
        }
      }
    } finally {
      this._pumping = false;
    }
  }

  /** @param {Pending} item @returns {Promise<Attempt>} */
  async _transmit(item) {
    const data = { conversationId: item.conversationId, text: item.text, messageId: item.messageId };
    if (this._mode === 'socket' && this._socket) {
      let reply;
      try {
        reply = await this._socket.timeout(this._options.ackTimeoutMs).emitWithAck('message:send', data);
      } catch {
        return { kind: 'retry', error: { code: 'OFFLINE', message: 'no acknowledgement in time' } };
      }
      if (reply && reply.ok) {
        const { ok, ...ack } = reply;
        return { kind: 'sent', ack: /** @type {SendAck} */ (ack) };
      }
      const error = reply && isObject(reply.error) ? reply.error : { code: 'INTERNAL', message: 'bad reply' };
      return RETRYABLE.has(error.code) ? { kind: 'retry', error } : { kind: 'failed', error };
    }
    try {
      const body = await this._http('POST', `/conversations/${item.conversationId}/messages`, {
        text: item.text, messageId: item.messageId,
      });
      return { kind: 'sent', ack: ackOf(body, item) };
    } catch (error) {
      const info = error instanceof ChatError ? { code: error.code, message: error.message } : { code: 'OFFLINE', message: String(error) };
      return RETRYABLE.has(info.code) ? { kind: 'retry', error: info } : { kind: 'failed', error: info };
    }
  }

  // -- typing, receipts, reactions, presence ---------------------------------------

  /**
   * Call on every keystroke: sends typing:start at most every typingThrottleMs, and
   * typing:stop after typingIdleMs without a call. Over the socket, or on the HTTP
   * fallback as POST /conversations/{id}/typing.
   * @param {number} conversationId
   */
  typing(conversationId) {
    if (!this._typingChannel()) return;
    const now = Date.now();
    let entry = this._typing.get(conversationId);
    if (!entry) {
      entry = { timer: null, lastStart: 0 };
      this._typing.set(conversationId, entry);
    }
    if (now - entry.lastStart >= this._options.typingThrottleMs) {
      entry.lastStart = now;
      this._sendTyping(conversationId, true);
    }
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.stopTyping(conversationId), this._options.typingIdleMs);
  }

  /** Say at once that we stopped typing. @param {number} conversationId */
  stopTyping(conversationId) {
    this._clearTyping(conversationId, true);
  }

  /** @param {number} conversationId @param {boolean} [announce] */
  _clearTyping(conversationId, announce = true) {
    const entry = this._typing.get(conversationId);
    if (!entry) return;
    if (entry.timer !== null) clearTimeout(entry.timer);
    this._typing.delete(conversationId);
    if (announce) this._sendTyping(conversationId, false);
  }

  /** @returns {'socket' | 'http' | null} how typing goes out now */
  _typingChannel() {
    if (this._socketReady && this._socket) return 'socket';
    return this._mode === 'http' && this.state === 'fallback' ? 'http' : null;
  }

  /** @param {number} conversationId @param {boolean} isTyping */
  _sendTyping(conversationId, isTyping) {
    const channel = this._typingChannel();
    if (channel === 'socket' && this._socket) {
      this._socket.emit(isTyping ? 'typing:start' : 'typing:stop', { conversationId });
    } else if (channel === 'http') {
      this._http('POST', `/conversations/${conversationId}/typing`, { isTyping }).catch(() => {
        // typing is ephemeral: a lost one ends by itself after TYPING_TIMEOUT_MS
      });
    }
  }

  /**
   * Mark a conversation read up to a message (its server id). Kept and sent on
   * reconnect when offline; the server never moves a read mark back.
   * @param {number} conversationId
   * @param {number} messageId
   * @returns {Promise<void>}
   */
  async markRead(conversationId, messageId) {
    const conversation = this._conversation(conversationId);
    if (conversation.readUpTo === null || messageId > conversation.readUpTo) conversation.readUpTo = messageId;
    if (this._canSend()) await this._sendRead(conversation);
  }

  /** @param {Conversation} conversation */
  async _sendRead(conversation) {
    const messageId = conversation.readUpTo;
    if (messageId === null) return;
    try {
      if (this._mode === 'socket' && this._socket) {
        const reply = await this._socket.timeout(this._options.ackTimeoutMs).emitWithAck('message:read', {
          conversationId: conversation.id, messageId,
        });
        if (reply && !reply.ok && RETRYABLE.has(reply.error?.code)) return;
      } else {
        await this._http('POST', `/conversations/${conversation.id}/read`, { messageId });
      }
      if (conversation.readUpTo === messageId) conversation.readUpTo = null;
    } catch {
      // kept in readUpTo: sent again on the next (re)connection
    }
  }

  /**
   * Toggle our emoji on a message. Not queued (a toggle repeated would undo itself).
   * @param {number} conversationId
   * @param {number} messageId
   * @param {string} emoji
   * @returns {Promise<{action: 'added' | 'removed'}>}
   */
  async react(conversationId, messageId, emoji) {
    if (this._mode === 'socket' && this._socketReady && this._socket) {
      let reply;
      try {
        reply = await this._socket.timeout(this._options.ackTimeoutMs).emitWithAck('message:react', {
          conversationId, messageId, emoji,
        });
      } catch {
        throw new ChatError('OFFLINE', 'no acknowledgement in time');
      }
      if (reply && reply.ok) return { action: reply.action };
      throw new ChatError(reply?.error?.code || 'INTERNAL', reply?.error?.message || 'bad reply');
    }
    if (this._mode === 'http' && this.state === 'fallback') {
      const body = await this._http('POST', `/conversations/${conversationId}/messages/${messageId}/reactions`, { emoji });
      return { action: body.action };
    }
    throw new ChatError('OFFLINE', 'not connected');
  }

  /**
   * Who is online: everyone, or one conversation's members. Over the socket, or
   * on the HTTP fallback as GET /presence.
   * @param {number} [conversationId]
   * @returns {Promise<{users: Identity[], count: number}>}
   */
  async requestPresence(conversationId) {
    if ((!this._socketReady || !this._socket) && this._mode === 'http' && this.state === 'fallback') {
      const query = conversationId === undefined ? '' : `?conversationId=${conversationId}`;
      const body = await this._http('GET', `/presence${query}`);
      return { users: body.users, count: body.count };
    }
    if (!this._socketReady || !this._socket) throw new ChatError('OFFLINE', 'presence needs the socket');
    const data = conversationId === undefined ? {} : { conversationId };
    let reply;
    try {
      reply = await this._socket.timeout(this._options.ackTimeoutMs).emitWithAck('presence:request', data);
    } catch {
      throw new ChatError('OFFLINE', 'no acknowledgement in time');
    }
    if (reply && reply.ok) return { users: reply.users, count: reply.count };
    throw new ChatError(reply?.error?.code || 'INTERNAL', reply?.error?.message || 'bad reply');
  }

  // -- REST-only helpers (work whether or not the socket is up) ---------------------

  /**
   * My conversations with unread counts (REST).
   * @returns {Promise<any[]>}
   */
  async conversations() {
    const body = await this._http('GET', '/conversations');
    return Array.isArray(body) ? body : Array.isArray(body.conversations) ? body.conversations : [];
  }

  /**
   * Create a conversation (REST); I am a member of it.
   * @param {string} title
   * @param {UserId[]} members
   * @returns {Promise<any>}
   */
  async createConversation(title, members) {
    return this._http('POST', '/conversations', { title, members });
  }

  /**
   * A page of older messages (REST), oldest first, each with its `reactions`; also
   * marks them seen, so a replay does not deliver them again. The members' read
   * positions that come with the page are emitted as `read` events.
   * @param {number} conversationId
   * @param {{before?: number, limit?: number}} [options]
   * @returns {Promise<ChatMessage[]>}
   */
  async history(conversationId, options = {}) {
    const query = new URLSearchParams();
    if (options.before !== undefined) query.set('before', String(options.before));
    query.set('limit', String(options.limit ?? 50));
    const body = await this._http('GET', `/conversations/${conversationId}/messages?${query}`);
    const messages = messagesOf(body).sort((a, b) => a.id - b.id);
    const conversation = this._conversation(conversationId);
    for (const message of messages) {
      remember(conversation.seen, message.id);
      if (conversation.highest === null || message.id > conversation.highest) conversation.highest = message.id;
    }
    this._onReads(conversationId, isObject(body) ? body.reads : undefined);
    return messages;
  }
}

/** @param {any} body @returns {ChatMessage[]} */
function messagesOf(body) {
  const list = Array.isArray(body) ? body : isObject(body) && Array.isArray(body.messages) ? body.messages : [];
  return list.filter((message) => isObject(message) && typeof message.id === 'number');
}

/**
 * The ack of a REST send: the answer is the stored message or an ack-shaped object.
 * @param {any} body @param {Pending} item @returns {SendAck}
 */
function ackOf(body, item) {
  const source = isObject(body) && isObject(body.message) ? body.message : body;
  /** @type {SendAck} */
  const ack = {
    messageId: item.messageId,
    status: 'sent',
    id: Number(source.id),
    conversationId: Number(source.conversationId ?? item.conversationId),
    createdAt: String(source.createdAt),
  };
  if (body.duplicate || source.duplicate) ack.duplicate = true;
  return ack;
}

/** @param {string} token @returns {Identity | null} */
function identityFromToken(token) {
  const claims = jwtClaims(token);
  const userId = claims.userId ?? claims.user_id ?? claims.sub;
  if (typeof userId !== 'number' && typeof userId !== 'string') return null;
  const name = typeof claims.name === 'string' ? claims.name : typeof claims.username === 'string' ? claims.username : String(userId);
  return { userId, name };
}

export default ChatManager;
