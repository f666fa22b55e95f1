// Presence: who is online (asked, and kept from user:online / user:offline), and
// our own typing indicator, throttled.

import { ChatError } from './errors.js';

/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./types.js').PresenceEvent} PresenceEvent */
/** @typedef {import('./types.js').UserId} UserId */
/** @typedef {import('./outbox.js').Transport} Transport */
/** @typedef {import('./http-transport.js').HttpTransport} HttpTransport */

/**
 * @typedef {object} PresenceHost
 * @property {() => Transport | null} channel  the transport that carries the session now
 * @property {{typingThrottleMs: number, typingIdleMs: number}} options
 * @property {(event: 'presence', data: PresenceEvent) => void} emit
 */

export class Presence {
  /** @param {PresenceHost} host */
  constructor(host) {
    this._host = host;
    /** @type {Map<number, {timer: ReturnType<typeof setTimeout> | null, lastStart: number}>} */
    this._typing = new Map();
  }

  // -- who is online ----------------------------------------------------------------

  /**
   * Who is online: everyone, or one conversation's members.
   * @param {number} [conversationId] @returns {Promise<{users: Identity[], count: number}>}
   */
  async request(conversationId) {
    const transport = this._host.channel();
    if (!transport) throw new ChatError('OFFLINE', 'not connected');
    const { users, count } = await transport.call('presence:request', { conversationId });
    return { users, count };
  }

  /**
   * On entering the HTTP fallback: who is online now, as `presence` events; the
   * long-poll's user:online and user:offline keep it current.
   * @param {HttpTransport} http @param {AbortSignal} signal
   */
  async refresh(http, signal) {
    try {
      const body = await http.call('presence:request', {}, { signal });
      if (signal.aborted || !Array.isArray(body.users)) return;
      for (const user of body.users) this.online(user);
    } catch {
      // presence is a nicety: the poll's user:online events still arrive
    }
  }

  /** `user:online`. @param {{userId: UserId, name: string}} data */
  online(data) {
    this._host.emit('presence', { userId: data.userId, name: data.name, online: true });
  }

  /** `user:offline`. @param {{userId: UserId, lastSeen: string}} data */
  offline(data) {
    this._host.emit('presence', { userId: data.userId, lastSeen: data.lastSeen, online: false });
  }

  // -- our typing ---------------------------------------------------------------------

  /**
   * On every keystroke: typing:start at most every typingThrottleMs, and typing:stop
   * after typingIdleMs without a call.
   * @param {number} conversationId
   */
  typing(conversationId) {
    if (!this._host.channel()) return;
    const now = Date.now();
    let entry = this._typing.get(conversationId);
    if (!entry) {
      entry = { timer: null, lastStart: 0 };
      this._typing.set(conversationId, entry);
    }
    if (now - entry.lastStart >= this._host.options.typingThrottleMs) {
      entry.lastStart = now;
      this._send(conversationId, true);
    }
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.stopTyping(conversationId, true), this._host.options.typingIdleMs);
  }

  /**
   * We stopped typing there; `announce` false when the server ends it by itself (a send).
   * @param {number} conversationId @param {boolean} announce
   */
  stopTyping(conversationId, announce) {
    const entry = this._typing.get(conversationId);
    if (!entry) return;
    if (entry.timer !== null) clearTimeout(entry.timer);
    this._typing.delete(conversationId);
    if (announce) this._send(conversationId, false);
  }

  /** Every typing indicator stopped (the manager closes). */
  stopAll() {
    for (const [conversationId] of this._typing) this.stopTyping(conversationId, true);
  }

  /** @param {number} conversationId @param {boolean} isTyping */
  _send(conversationId, isTyping) {
    this._host.channel()?.call('typing', { conversationId, isTyping }).catch(() => {
      // typing is ephemeral: a lost one ends by itself after TYPING_TIMEOUT_MS
    });
  }
}
