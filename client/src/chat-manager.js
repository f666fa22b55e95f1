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
// This module is the facade: the public API, the connection state, which transport
// carries the session, and the wiring of the parts (at the end). The work is in
// modules of its own: operations.js (each operation's socket event and REST form,
// declared once), socket-transport.js and http-transport.js (`call()` and their
// lifecycles), outbox.js, conversations.js (with read-marks.js) and presence.js;
// options.js completes and checks the options.

import { Conversations } from './conversations.js';
import { ChatActions, changeEvents } from './chat-actions.js';
import { ChatError } from './errors.js';
import { HttpTransport } from './http-transport.js';
import { resolveOptions, retryDelay } from './options.js';
import { Outbox } from './outbox.js';
import { Presence } from './presence.js';
import { sendReadMark } from './read-marks.js';
import { SocketTransport } from './socket-transport.js';
import { TokenSource } from './tokens.js';
import { identityFromToken, isObject, newMessageId } from './util.js';

export { ChatError };

// The public shapes (types.js), under this module's name for the package's .d.ts.
/**
 * @typedef {import('./types.js').UserId} UserId
 * @typedef {import('./types.js').ClientMessageId} ClientMessageId
 * @typedef {import('./types.js').ChatMessage} ChatMessage
 * @typedef {import('./types.js').ReplyTo} ReplyTo
 * @typedef {import('./types.js').SendOptions} SendOptions
 * @typedef {import('./types.js').MessageRef} MessageRef
 * @typedef {import('./types.js').MessageUpdatedEvent} MessageUpdatedEvent
 * @typedef {import('./types.js').MessageEdit} MessageEdit
 * @typedef {import('./types.js').MessageDeletedEvent} MessageDeletedEvent
 * @typedef {import('./types.js').MessageDeletion} MessageDeletion
 * @typedef {import('./types.js').MessageVersions} MessageVersions
 * @typedef {import('./types.js').PinEvent} PinEvent
 * @typedef {import('./types.js').PinResult} PinResult
 * @typedef {import('./types.js').Role} Role
 * @typedef {import('./types.js').MemberChange} MemberChange
 * @typedef {import('./types.js').MemberAddedEvent} MemberAddedEvent
 * @typedef {import('./types.js').MemberRemovedEvent} MemberRemovedEvent
 * @typedef {import('./types.js').MemberUpdatedEvent} MemberUpdatedEvent
 * @typedef {import('./types.js').ReactionCount} ReactionCount
 * @typedef {import('./types.js').SendAck} SendAck
 * @typedef {import('./types.js').OutgoingStatus} OutgoingStatus
 * @typedef {import('./types.js').OutgoingEvent} OutgoingEvent
 * @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo
 * @typedef {import('./types.js').TypingEvent} TypingEvent
 * @typedef {import('./types.js').ReadEvent} ReadEvent
 * @typedef {import('./types.js').ReactionEvent} ReactionEvent
 * @typedef {import('./types.js').PresenceEvent} PresenceEvent
 * @typedef {import('./types.js').Member} Member
 * @typedef {import('./types.js').MembersEvent} MembersEvent
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

export class ChatManager extends ChatActions {
  /** @param {ChatManagerOptions} [options] */
  constructor(options = {}) {
    super();
    const resolved = resolveOptions(options);
    /** @type {string} */
    this.wsServer = resolved.wsServer;
    /** @type {string | null} the REST API root, or null without a fallback */
    this.httpFallback = resolved.httpFallback;
    /** @type {string | null} */
    this.mainSiteUrl = resolved.mainSiteUrl;
    this._options = resolved.settings;
    this._ioOptions = resolved.ioOptions;
    this._jitter = resolved.jitter;
    /** @type {typeof fetch} */
    const fetcher = options.fetch || ((input, init) => globalThis.fetch(input, init));
    this._tokens = new TokenSource({
      token: options.token, getToken: options.getToken, mainSiteUrl: this.mainSiteUrl, fetch: fetcher,
    });
    /** @type {ConnectionState} */
    this.state = 'idle';
    /** @type {'websocket' | 'polling' | 'http' | null} the transport last announced */
    this._lastTransport = null;
    /** @type {Identity | null} who the server says we are */
    this.identity = null;
    /** @type {ChatErrorInfo | null} why the server refused us last (a refused token's reason) */
    this._refusal = null;

    /** @param {any} event @param {any} data */
    const emit = (event, data) => this._emit(event, data);
    /** @param {number} failures */
    const delay = (failures) => this._retryDelay(failures);
    this._sockets = new SocketTransport(socketHost(this));
    this._http = new HttpTransport(httpHost(this, fetcher));
    this._conversations = new Conversations({
      socket: this._sockets, http: this._http, hasHttp: this.httpFallback !== null, retryDelay: delay, emit,
    });
    this._outbox = new Outbox({
      channel: () => this._sendChannel(), identity: () => this.identity, retryDelay: delay, emit,
      onSent: (message) => this._conversations.onMessage(message),
    });
    this._presence = new Presence({ channel: () => this._active(), options: this._options, emit });
    this._handlers = serverEvents(this);
  }

  /**
   * The socket.io-client socket, once connect() made it (for a look from the console).
   * @returns {import('socket.io-client').Socket | null}
   */
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

  /** The wait before retry number `failures` (options.js). @param {number} failures @returns {number} */
  _retryDelay(failures) {
    return retryDelay(this._options, this._jitter, failures);
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
          // The server's own reason ("bad signature", "token expired", ...) when it gave one.
          const refusal = state === 'unauthorized' ? this._refusal : null;
          reject(refusal ? new ChatError(refusal.code, refusal.message)
            : new ChatError('AUTH_FAILED', `cannot start: ${state}`));
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
   * @param {SendOptions} [options] its messageId, and the message it replies to and whom it mentions
   * @returns {Promise<SendAck>}
   */
  send(conversationId, text, options = {}) {
    this._presence.stopTyping(conversationId, false); // the server ends our typing on send
    const { messageId, ...extra } = options;
    return this._outbox.send(conversationId, text, messageId ?? newMessageId(), extra);
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
    if (transport) await sendReadMark(conversation, transport);
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
   * positions that come with the page are emitted as `read` events, and its members
   * (when the server lists them) as a `members` event.
   * @param {number} conversationId
   * @param {{before?: number, limit?: number}} [options]
   * @returns {Promise<ChatMessage[]>}
   */
  history(conversationId, options = {}) {
    return this._conversations.history(conversationId, options);
  }
}

// -- the wiring: what ChatManager does on each transport's lifecycle event, and
// with each server event --------------------------------------------------------------

/** @param {ChatManager} manager @returns {import('./socket-transport.js').SocketHost} */
function socketHost(manager) {
  return {
    tokens: manager._tokens,
    options: manager._options,
    canFallBack: manager.httpFallback !== null,
    retryDelay: (failures) => manager._retryDelay(failures),
    dispatch: (event, data) => manager._dispatch(event, data),
    closed: () => manager.state === 'closed',
    emit: (event, data) => manager._emit(event, data),
    onReady: (identity, refresh) => {
      // The socket is authenticated: it carries the session.
      manager.identity = identity;
      manager._refusal = null;
      manager._http.stop();
      manager._setState('online');
      manager._emit('authenticated', identity);
      if (refresh) {
        manager._outbox.kick(); // a fresh token on a live socket: its rooms are kept
        return;
      }
      resyncSocket(manager);
    },
    onDown: () => manager._setState('offline'),
    onConnectFailed: () => {
      if (!manager._http.running) manager._setState('offline');
    },
    onUpgrade: () => {
      if (manager.state === 'online') manager._setState('online'); // announces the new transport
    },
    onUnauthorized: (refusal) => {
      manager._refusal = refusal;
      manager._setState('unauthorized');
    },
    onUnreachable: () => {
      const { state } = manager;
      if (!manager.httpFallback || manager._http.running || manager._sockets.ready) return;
      if (state !== 'closed' && state !== 'unauthorized') manager._http.start();
    },
  };
}

/** Rejoin every open conversation with `since`, send pending read marks, then the outbox. @param {ChatManager} manager */
async function resyncSocket(manager) {
  await manager._conversations.rejoinAll();
  await manager._conversations.sendReads(manager._sockets, () => manager._sockets.ready);
  manager._outbox.kick();
}

/** @param {ChatManager} manager @param {typeof fetch} fetcher @returns {import('./http-transport.js').HttpHost} */
function httpHost(manager, fetcher) {
  return {
    base: manager.httpFallback,
    tokens: manager._tokens,
    fetch: fetcher,
    options: manager._options,
    retryDelay: (failures) => manager._retryDelay(failures),
    dispatch: (event, data) => manager._dispatch(event, data),
    catchUp: (signal) => manager._conversations.catchUpAll(signal),
    onCaughtUp: async (signal) => {
      // The fallback caught up: it carries the session until the socket is back.
      const { token } = manager._tokens;
      if (!manager.identity && token) manager.identity = identityFromToken(token);
      manager._setState('fallback');
      manager._presence.refresh(manager._http, signal);
      await manager._conversations.sendReads(manager._http);
      manager._outbox.kick();
    },
    onFailing: () => {
      if (manager.state === 'fallback') manager._setState('offline');
    },
    onResync: (cursor) => manager._emit('resync', { cursor }),
    cursor: () => manager._conversations.oldestCursor(),
    onCursor: (cursor) => manager._conversations.cursors.polled(cursor),
  };
}

/**
 * The server's events, from the socket and the long-poll alike, and what the page
 * hears of each. A Map: an event name from the wire is never an Object property.
 * @param {ChatManager} manager @returns {Map<string, (data: any) => void>}
 */
function serverEvents(manager) {
  const conversations = manager._conversations;
  /** @param {'conversationAdded' | 'conversationUpdated'} event @param {any} data */
  const aboutConversation = (event, data) => {
    // We became a member (the page decides whether to join it), or a member renamed one.
    if (isObject(data) && Number.isSafeInteger(data.conversationId)) manager._emit(event, /** @type {any} */ (data));
  };
  return new Map(Object.entries({
    'message:new': (/** @type {any} */ data) => conversations.onMessage(data),
    'typing:indicator': (/** @type {any} */ data) => manager._emit('typing', data),
    'message:read-receipt': (/** @type {any} */ data) => manager._emit('read', data),
    'message:reaction': (/** @type {any} */ data) => manager._emit('reaction', data),
    'user:online': (/** @type {any} */ data) => manager._presence.online(data),
    'user:offline': (/** @type {any} */ data) => manager._presence.offline(data),
    'user:joined': (/** @type {any} */ data) => manager._emit('joined', data),
    'user:left': (/** @type {any} */ data) => manager._emit('left', data),
    'member:removed': (/** @type {any} */ data) => conversations.onMemberRemoved(data, manager.identity),
    'conversation:added': (/** @type {any} */ data) => aboutConversation('conversationAdded', data),
    'conversation:removed': (/** @type {any} */ data) => conversations.onRemovedFrom(data),
    'conversation:updated': (/** @type {any} */ data) => aboutConversation('conversationUpdated', data),
    ...changeEvents(manager),
  }));
}

export default ChatManager;
