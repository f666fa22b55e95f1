// What the client knows of each conversation, and keeping it whole: joins that
// replay from the highest id seen, a capped replay's rest paged from history, the
// HTTP fallback's catch-up, each message delivered once and in order, read marks
// kept until a transport takes them.

import { Cursors, joinWithCursor } from './cursors.js';
import { ChatError, finalHttpRefusal, RETRYABLE } from './errors.js';
import { keepReadMark, sendReadMark } from './read-marks.js';
import { isObject, messagesOf } from './util.js';

/** @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo */
/** @typedef {import('./types.js').ChatMessage} ChatMessage */
/** @typedef {import('./types.js').ConversationRemovedEvent} ConversationRemovedEvent */
/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./types.js').JoinResult} JoinResult */
/** @typedef {import('./types.js').Member} Member */
/** @typedef {import('./types.js').MemberEvent} MemberEvent */
/** @typedef {import('./types.js').ReadEvent} ReadEvent */
/** @typedef {import('./outbox.js').Transport} Transport */
/** @typedef {import('./socket-transport.js').SocketTransport} SocketTransport */
/** @typedef {import('./http-transport.js').HttpTransport} HttpTransport */

// How many ids per conversation are remembered to drop repeats; older ones are below
// every `since` the client will ask with, so the server does not send them again.
const SEEN_LIMIT = 5000;
// Messages per REST history page when catching up (the server allows up to 500):
// a capped join's rest, 49,000 messages, is 98 requests, not 490.
const HISTORY_PAGE = 500;

/**
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
 * @typedef {object} ConversationsHost
 * @property {SocketTransport} socket
 * @property {HttpTransport} http
 * @property {boolean} hasHttp           there is a REST API to page history from
 * @property {(failures: number) => number} retryDelay
 * @property {(event: 'message' | 'read' | 'members' | 'removed' | 'memberRemoved' | 'conversationRemoved' | 'resync',
 *   data: any) => void} emit
 */

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

/**
 * The read positions a join or a history page reported (`[{ userId, messageId, readAt }]`),
 * as `read` events.
 * @param {number} conversationId @param {unknown} reads @returns {ReadEvent[]}
 */
function readEvents(conversationId, reads) {
  /** @type {ReadEvent[]} */
  const events = [];
  for (const read of Array.isArray(reads) ? reads : []) {
    if (!isObject(read) || typeof read.messageId !== 'number') continue;
    events.push({ conversationId, messageId: read.messageId, userId: read.userId, readAt: read.readAt ?? null });
  }
  return events;
}

/**
 * The members a join ack or a history page lists (`members: [{ userId, name, role }]`),
 * or null when it has no such field (a server from before it).
 * @param {unknown} members @returns {Member[] | null}
 */
function membersOf(members) {
  if (!Array.isArray(members)) return null;
  /** @type {Member[]} */
  const listed = [];
  for (const member of members) {
    if (!isObject(member) || (typeof member.userId !== 'number' && typeof member.userId !== 'string')) continue;
    listed.push({
      userId: member.userId,
      name: typeof member.name === 'string' && member.name ? member.name : null,
      role: typeof member.role === 'string' ? member.role : null,
    });
  }
  return listed;
}

export class Conversations {
  /** @param {ConversationsHost} host */
  constructor(host) {
    this._host = host;
    /** @type {Map<number, Conversation>} */
    this._byId = new Map();
    this.cursors = new Cursors(); // what each conversation rejoins with
  }

  /** @param {number} id @returns {Conversation} */
  get(id) {
    let conversation = this._byId.get(id);
    if (!conversation) {
      conversation = {
        id, open: false, highest: null, since: undefined, seen: new Set(), catchingUp: 0, held: [], readUpTo: null, waiters: [],
      };
      this._byId.set(id, conversation);
    }
    return conversation;
  }

  /**
   * Opened by the page: kept joined across reconnects; resolves once joined.
   * @param {number} id @param {number | undefined} since
   * @returns {[Conversation, Promise<JoinResult>]}
   */
  open(id, since) {
    const conversation = this.get(id);
    conversation.open = true;
    if (conversation.highest === null && since !== undefined) conversation.since = since;
    const joined = new Promise((resolve, reject) => conversation.waiters.push({ resolve, reject }));
    return [conversation, /** @type {Promise<JoinResult>} */ (joined)];
  }

  /** No longer rejoined (left, or we are no longer a member). @param {number} id */
  close(id) {
    const conversation = this._byId.get(id);
    if (conversation) conversation.open = false;
  }

  /** Every join waiting is rejected: the manager closed. @param {ChatError} error */
  closeAll(error) {
    for (const conversation of this._byId.values()) {
      for (const waiter of conversation.waiters.splice(0)) waiter.reject(error);
    }
  }

  /**
   * The main site removed someone from a conversation (`member:removed`); when it
   * is us, stop rejoining it.
   * @param {MemberEvent} data @param {Identity | null} me
   */
  onMemberRemoved(data, me) {
    if (!isObject(data)) return;
    if (me && String(data.userId) === String(me.userId)) this.close(Number(data.conversationId));
    this._host.emit('removed', data);
    this._host.emit('memberRemoved', data);
  }

  /**
   * We are no longer a member (`conversation:removed`): not rejoined (the server has
   * taken our sockets out of its room already).
   * @param {ConversationRemovedEvent} data
   */
  onRemovedFrom(data) {
    if (!isObject(data) || !Number.isSafeInteger(data.conversationId)) return;
    this.close(data.conversationId);
    this._host.emit('conversationRemoved', data);
  }

  // -- messages -------------------------------------------------------------------

  /** A message from the server (live, replayed, polled, or our own stored). @param {ChatMessage} message */
  onMessage(message) {
    if (!isObject(message) || typeof message.id !== 'number') return;
    const conversation = this.get(Number(message.conversationId));
    if (conversation.catchingUp > 0) {
      conversation.held.push(message); // newer than the history being paged: after it
      return;
    }
    this._deliver(conversation, message);
  }

  /** Deliver a message once. @param {Conversation} conversation @param {ChatMessage} message */
  _deliver(conversation, message) {
    if (conversation.seen.has(message.id)) return;
    this._see(conversation, message.id);
    this._host.emit('message', message);
  }

  /** @param {Conversation} conversation @param {number} id */
  _see(conversation, id) {
    remember(conversation.seen, id);
    if (conversation.highest === null || id > conversation.highest) conversation.highest = id;
  }

  /**
   * A page of older messages (REST), oldest first; marked seen, so a replay does not
   * deliver them again; its read positions are emitted as `read` events (and its
   * members, when listed, as `members`).
   * @param {number} id @param {{before?: number, limit?: number}} options
   * @returns {Promise<ChatMessage[]>}
   */
  async history(id, options) {
    const body = await this._host.http.call('messages:history', {
      conversationId: id, before: options.before, limit: options.limit ?? 50,
    });
    const messages = messagesOf(body).sort((a, b) => a.id - b.id);
    const conversation = this.get(id);
    for (const message of messages) this._see(conversation, message.id);
    this._onState(id, body);
    return messages;
  }

  /**
   * Every message after `after` from REST history, page by page, delivered in order
   * (repeats dropped); the read positions (and members) of the last page.
   * @param {Conversation} conversation @param {number} after @param {AbortSignal} [signal]
   * @returns {Promise<{reads: ReadEvent[], members?: Member[]}>}
   */
  async _historyAfter(conversation, after, signal) {
    /** @type {{reads: ReadEvent[], members?: Member[]}} */
    let state = { reads: [] };
    for (;;) {
      const body = await this._host.http.call('messages:history', {
        conversationId: conversation.id, since: after, limit: HISTORY_PAGE,
      }, { signal });
      const messages = messagesOf(body).sort((a, b) => a.id - b.id);
      for (const message of messages) this._deliver(conversation, message);
      state = this._onState(conversation.id, body);
      if (messages.length === 0 || (body.hasMore === undefined ? messages.length < HISTORY_PAGE : !body.hasMore)) break;
      after = messages[messages.length - 1].id;
    }
    return state;
  }

  /**
   * What a join ack or a history page says besides its messages: the members' read
   * positions, emitted as `read` events (so a page shows "Seen by" however it learnt
   * of them), and, from a server that lists them, the members with their names, as
   * one `members` event.
   * @param {number} conversationId @param {unknown} body the ack or the page
   * @returns {{reads: ReadEvent[], members?: Member[]}}
   */
  _onState(conversationId, body) {
    const reads = readEvents(conversationId, isObject(body) ? body.reads : undefined);
    for (const event of reads) this._host.emit('read', event);
    const members = membersOf(isObject(body) ? body.members : undefined);
    if (!members) return { reads };
    this._host.emit('members', { conversationId, members });
    return { reads, members };
  }

  // -- joining over the socket --------------------------------------------------------

  /** Rejoin every open conversation with `since` (the socket is authenticated). */
  async rejoinAll() {
    for (const conversation of [...this._byId.values()]) {
      if (conversation.open && this._host.socket.ready) await this.joinRoom(conversation);
    }
  }

  /** @param {Conversation} conversation */
  async joinRoom(conversation) {
    let reply;
    try {
      reply = await joinWithCursor(this._host.socket, this.cursors, conversation, this._host.emit);
    } catch (error) {
      const info = error instanceof ChatError ? error : new ChatError('INTERNAL', String(error));
      if (info.code === 'OFFLINE') return; // no answer (disconnected): the next connection rejoins
      if (!RETRYABLE.has(info.code)) {
        conversation.open = false;
        this._fail(conversation, info);
      } else {
        // Worth another try on this connection (the database was busy, say).
        setTimeout(() => this._joinAgain(conversation), this._host.retryDelay(1));
      }
      return;
    }
    const state = this._onState(conversation.id, reply);
    if (reply.resync === true && typeof reply.replayedUpTo === 'number'
        && !await this._pageRestOfJoin(conversation, reply.replayedUpTo)) return;
    const pinned = Array.isArray(reply.pinned) ? { pinned: reply.pinned.filter(Number.isInteger) } : {};
    this._settle(conversation, { conversationId: conversation.id, onlineUserIds: reply.onlineUserIds || [], ...state, ...pinned });
  }

  /** @param {Conversation} conversation */
  _joinAgain(conversation) {
    if (conversation.open && this._host.socket.ready) this.joinRoom(conversation);
  }

  /** Where the long-poll starts: the oldest cursor of the open conversations, or null. @returns {string | null} */
  oldestCursor() {
    return this.cursors.oldest([...this._byId.values()].filter((conversation) => conversation.open).map(({ id }) => id));
  }

  /**
   * The server replayed a join only up to `after` (its REPLAY_MAX_MESSAGES): the
   * rest comes from REST history, as the HTTP fallback catches up, page by page.
   * Live messages of the conversation that arrive meanwhile are held and delivered
   * after it, so the page sees every message in order and once. True when caught
   * up; false when the join was failed, or is tried again (then it settles later).
   * @param {Conversation} conversation @param {number} after
   * @returns {Promise<boolean>}
   */
  async _pageRestOfJoin(conversation, after) {
    if (!this._host.hasHttp) {
      // No REST API configured: the next join replays the next REPLAY_MAX_MESSAGES.
      this._joinAgain(conversation);
      return false;
    }
    conversation.catchingUp += 1;
    let caughtUp = false;
    try {
      await this._historyAfter(conversation, after);
      caughtUp = true;
      return true;
    } catch (error) {
      if (finalHttpRefusal(error)) {
        conversation.open = false;
        this._fail(conversation, error);
      } else {
        setTimeout(() => this._joinAgain(conversation), this._host.retryDelay(1)); // from the highest id delivered
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

  // -- catching up over HTTP ------------------------------------------------------------

  /** Every open conversation caught up from REST history. @param {AbortSignal} signal */
  async catchUpAll(signal) {
    for (const conversation of [...this._byId.values()]) {
      if (conversation.open) await this.catchUp(conversation, signal);
    }
  }

  /**
   * A join on the fallback: what came after `since`, from history (the long-poll
   * brings what follows). A failure that may pass is thrown, for the loop to retry.
   * @param {Conversation} conversation @param {AbortSignal} signal
   */
  async catchUp(conversation, signal) {
    const since = conversation.highest ?? conversation.since;
    if (since === undefined || since === null) {
      this._settle(conversation, { conversationId: conversation.id, onlineUserIds: [], reads: [] });
      return;
    }
    let state;
    try {
      state = await this._historyAfter(conversation, since, signal);
    } catch (error) {
      if (finalHttpRefusal(error)) {
        conversation.open = false;
        this._fail(conversation, error);
        return;
      }
      throw error;
    }
    this._settle(conversation, { conversationId: conversation.id, onlineUserIds: [], ...state });
  }

  /** @param {Conversation} conversation @param {JoinResult} result */
  _settle(conversation, result) {
    this.cursors.settled(conversation.id);
    for (const waiter of conversation.waiters.splice(0)) waiter.resolve(result);
  }

  /** @param {Conversation} conversation @param {ChatErrorInfo} error */
  _fail(conversation, error) {
    const failure = new ChatError(error?.code || 'INTERNAL', error?.message || 'join failed');
    for (const waiter of conversation.waiters.splice(0)) waiter.reject(failure);
  }

  // -- read marks -----------------------------------------------------------------------

  /** @param {number} id @param {number} messageId @returns {Conversation} the conversation, its mark kept */
  markRead(id, messageId) {
    const conversation = this.get(id);
    keepReadMark(conversation, messageId);
    return conversation;
  }

  /** Every read mark still to send, over `transport`. @param {Transport} transport @param {() => boolean} [still] */
  async sendReads(transport, still = () => true) {
    for (const conversation of this._byId.values()) {
      if (conversation.readUpTo !== null && still()) await sendReadMark(conversation, transport);
    }
  }
}
