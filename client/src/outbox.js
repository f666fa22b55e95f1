// The offline queue: sends wait here while no transport can take them, go out one at
// a time in order, and are retried with the SAME messageId, which the server stores
// exactly once however often it is tried.

import { ChatError, errorInfo, RETRYABLE } from './errors.js';
import { sleep } from './util.js';

/** @typedef {import('./types.js').ChatMessage} ChatMessage */
/** @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo */
/** @typedef {import('./types.js').ClientMessageId} ClientMessageId */
/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./types.js').OutgoingEvent} OutgoingEvent */
/** @typedef {import('./types.js').OutgoingStatus} OutgoingStatus */
/** @typedef {import('./types.js').SendAck} SendAck */

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
 * @typedef {{call: (name: string, payload: Record<string, unknown>) => Promise<any>}} Transport
 *
 * @typedef {object} OutboxHost
 * @property {() => Transport | null} channel  the transport that may send now; null: wait
 * @property {() => Identity | null} identity
 * @property {(failures: number) => number} retryDelay
 * @property {(event: 'outgoing', data: OutgoingEvent) => void} emit
 * @property {(message: ChatMessage) => void} onSent  our message, stored: delivered as any other
 */

export class Outbox {
  /** @param {OutboxHost} host */
  constructor(host) {
    this._host = host;
    /** @type {Pending[]} */
    this._queue = [];
    /** @type {AbortController} wakes the pump from its retry wait */
    this._wake = new AbortController();
    this._pumping = false;
  }

  /**
   * Queue a message; resolves once stored, rejects once refused for good.
   * @param {number} conversationId @param {string} text @param {ClientMessageId} messageId
   * @returns {Promise<SendAck>}
   */
  send(conversationId, text, messageId) {
    /** @type {Pending} */
    const item = /** @type {any} */ ({ messageId, conversationId, text, status: 'queued', attempts: 0 });
    const sent = new Promise((resolve, reject) => {
      item.resolve = resolve;
      item.reject = reject;
    });
    this._queue.push(item);
    this._outgoing(item);
    this.kick();
    return /** @type {Promise<SendAck>} */ (sent);
  }

  /** Messages waiting to be stored, oldest first. @returns {OutgoingEvent[]} */
  get pending() {
    return this._queue.map((item) => ({
      messageId: item.messageId, conversationId: item.conversationId, text: item.text, status: item.status,
    }));
  }

  /** Wake the pump: send what is queued, or retry at once after a state change. */
  kick() {
    this._wake.abort();
    this._wake = new AbortController();
    this._pump();
  }

  /** For good: the pump stops waiting, every queued send is rejected. @param {ChatError} error */
  close(error) {
    this._wake.abort();
    for (const item of this._queue.splice(0)) item.reject(error);
  }

  /** @param {Pending} item @param {{id?: number, error?: ChatErrorInfo}} [extra] */
  _outgoing(item, extra = {}) {
    this._host.emit('outgoing', {
      messageId: item.messageId, conversationId: item.conversationId, text: item.text, status: item.status, ...extra,
    });
  }

  async _pump() {
    if (this._pumping) return;
    this._pumping = true;
    try {
      let failures = 0;
      /** @type {Transport | null} */
      let transport;
      while (this._queue.length > 0 && (transport = this._host.channel())) {
        const item = this._queue[0];
        item.status = 'sending';
        item.attempts += 1;
        this._outgoing(item);
        let ack;
        try {
          ack = /** @type {SendAck} */ (await transport.call('message:send', {
            conversationId: item.conversationId, text: item.text, messageId: item.messageId,
          }));
        } catch (error) {
          const info = errorInfo(error);
          if (RETRYABLE.has(info.code)) {
            failures += 1;
            item.status = 'queued';
            this._outgoing(item, { error: info });
            await sleep(this._host.retryDelay(failures), this._wake.signal);
          } else {
            this._queue.shift();
            item.status = 'failed';
            this._outgoing(item, { error: info });
            item.reject(new ChatError(info.code, info.message));
          }
          continue;
        }
        this._queue.shift();
        failures = 0;
        item.status = 'sent';
        this._sent(item, ack);
        this._outgoing(item, { id: ack.id });
        item.resolve(ack);
      }
    } finally {
      this._pumping = false;
    }
  }

  /** Our stored message, as the others get it. @param {Pending} item @param {SendAck} ack */
  _sent(item, ack) {
    const identity = this._host.identity();
    this._host.onSent({
      id: ack.id,
      messageId: item.messageId,
      conversationId: item.conversationId,
      userId: identity ? identity.userId : '',
      senderName: identity ? identity.name : '',
      text: item.text,
      createdAt: ack.createdAt,
    });
  }
}
