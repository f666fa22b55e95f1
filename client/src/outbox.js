// The offline queue: sends, edits and deletions wait here while no transport can take
// them, and go out one at a time in the order they were made. A send is retried with
// the SAME messageId, which the server stores exactly once however often it is
// tried; an edit again with the same text (a repeat changes nothing); a deletion
// answered CONFLICT (deleted already, by an earlier try or by someone else) is done.
// An edit or a deletion of a message still queued waits behind its send and uses the
// server id from that send's ack; a deletion of one never tried takes it out of the
// queue without calling the server.

import { ChatError, errorInfo, RETRYABLE } from './errors.js';
import { isObject, sleep } from './util.js';

/** @typedef {import('./types.js').ChatMessage} ChatMessage */
/** @typedef {import('./types.js').ChatErrorInfo} ChatErrorInfo */
/** @typedef {import('./types.js').ClientMessageId} ClientMessageId */
/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./types.js').MessageRef} MessageRef */
/** @typedef {import('./types.js').MessageDeletion} MessageDeletion */
/** @typedef {import('./types.js').MessageEdit} MessageEdit */
/** @typedef {import('./types.js').OutgoingEvent} OutgoingEvent */
/** @typedef {import('./types.js').OutgoingStatus} OutgoingStatus */
/** @typedef {import('./types.js').SendAck} SendAck */
/** @typedef {import('./types.js').SendOptions} SendOptions */

// How many of our sends this session are remembered by messageId (their server id,
// or that they were refused), for edits and deletions that name them so.
const REMEMBERED = 1000;

/**
 * @typedef {object} Pending  A send, an edit or a deletion in the outbox.
 * @property {'send' | 'edit' | 'delete'} kind
 * @property {number} conversationId
 * @property {ClientMessageId | null} messageId  a send's own; an edit's or a deletion's of the
 *                                   send it waits for (null when it names a server id)
 * @property {number | null} id      an edit's or a deletion's target, once known
 * @property {string} text           a send's or an edit's
 * @property {SendOptions} [options] a send's replyTo and mentions
 * @property {OutgoingStatus} status
 * @property {number} attempts
 * @property {(value: any) => void} resolve
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

/** Keep at most REMEMBERED entries, forgetting the oldest. @param {Map<any, any>} map */
function bound(map) {
  if (map.size <= REMEMBERED) return;
  const oldest = map.keys().next();
  if (!oldest.done) map.delete(oldest.value);
}

export class Outbox {
  /** @param {OutboxHost} host */
  constructor(host) {
    this._host = host;
    /** @type {Pending[]} */
    this._queue = [];
    /** @type {Map<ClientMessageId, number | ChatError>} our sends: server id, or why refused */
    this._done = new Map();
    /** @type {AbortController} wakes the pump from its retry wait */
    this._wake = new AbortController();
    this._pumping = false;
  }

  /**
   * Queue a message; resolves once stored, rejects once refused for good.
   * @param {number} conversationId @param {string} text @param {ClientMessageId} messageId
   * @param {SendOptions} [options]
   * @returns {Promise<SendAck>}
   */
  send(conversationId, text, messageId, options = {}) {
    return this._enqueue({ kind: 'send', conversationId, messageId, id: null, text, options }, true);
  }

  /**
   * Queue an edit behind what is queued already; resolves with the server's answer.
   * @param {number} conversationId @param {MessageRef} target @param {string} text
   * @returns {Promise<MessageEdit>}
   */
  edit(conversationId, target, text) {
    const item = this._targeting('edit', conversationId, target, text);
    return item instanceof ChatError ? Promise.reject(item) : this._enqueue(item, false);
  }

  /**
   * Queue a deletion. One of a send never tried takes that send (and the edits of it)
   * out of the queue instead: they reject with ChatError('CANCELLED').
   * @param {number} conversationId @param {MessageRef} target
   * @returns {Promise<MessageDeletion>}
   */
  delete(conversationId, target) {
    const item = this._targeting('delete', conversationId, target, '');
    if (item instanceof ChatError) return Promise.reject(item);
    const send = this._queue.find((queued) => queued.kind === 'send' && queued.messageId === item.messageId);
    if (send && send.attempts === 0) {
      this._cancel(send);
      return Promise.resolve({ id: null, conversationId, deletedBy: null, deletedAt: null });
    }
    return this._enqueue(item, false);
  }

  /** Messages waiting to be stored, oldest first. @returns {OutgoingEvent[]} */
  get pending() {
    return this._queue.filter((item) => item.kind === 'send').map((item) => ({
      messageId: /** @type {ClientMessageId} */ (item.messageId),
      conversationId: item.conversationId,
      text: item.text,
      status: item.status,
    }));
  }

  /** Wake the pump: send what is queued, or retry at once after a state change. */
  kick() {
    this._wake.abort();
    this._wake = new AbortController();
    this._pump();
  }

  /** For good: the pump stops waiting, everything queued is rejected. @param {ChatError} error */
  close(error) {
    this._wake.abort();
    for (const item of this._queue.splice(0)) item.reject(error);
  }

  /**
   * An edit or a deletion of `target`: a server id, or `{ messageId }` of a send of ours
   * (queued, or sent this session). A ChatError when there is no such send.
   * @param {'edit' | 'delete'} kind @param {number} conversationId @param {MessageRef} target
   * @param {string} text @returns {Omit<Pending, 'status' | 'attempts' | 'resolve' | 'reject'> | ChatError}
   */
  _targeting(kind, conversationId, target, text) {
    if (typeof target === 'number') return { kind, conversationId, messageId: null, id: target, text };
    const messageId = isObject(target) && target.messageId !== undefined ? target.messageId : null;
    if (messageId !== null && this._queue.some((item) => item.kind === 'send' && item.messageId === messageId)) {
      return { kind, conversationId, messageId, id: null, text }; // its send's ack will tell the id
    }
    const done = messageId === null ? undefined : this._done.get(messageId);
    if (typeof done === 'number') return { kind, conversationId, messageId, id: done, text };
    if (done instanceof ChatError && kind === 'delete') return { kind, conversationId, messageId, id: null, text };
    return new ChatError('NOT_FOUND', done instanceof ChatError ? `that message was never stored: ${done.message}`
      : 'no message of ours with that messageId: name it by its server id');
  }

  /**
   * @param {Omit<Pending, 'status' | 'attempts' | 'resolve' | 'reject'>} fields
   * @param {boolean} announce a send: `outgoing` events follow it
   * @returns {Promise<any>}
   */
  _enqueue(fields, announce) {
    /** @type {Pending} */
    const item = /** @type {any} */ ({ ...fields, status: 'queued', attempts: 0 });
    const done = new Promise((resolve, reject) => {
      item.resolve = resolve;
      item.reject = reject;
    });
    this._queue.push(item);
    if (announce) this._outgoing(item);
    this.kick();
    return done;
  }

  /** A send never tried is deleted: it leaves the queue, with the edits of it. @param {Pending} send */
  _cancel(send) {
    const cancelled = new ChatError('CANCELLED', 'the message was deleted before it was sent');
    this._queue = this._queue.filter((item) => {
      if (item !== send && item.messageId !== send.messageId) return true;
      item.status = 'cancelled';
      if (item === send) this._outgoing(item, { error: errorInfo(cancelled) });
      item.reject(cancelled);
      return false;
    });
    if (send.messageId !== null) this._remember(send.messageId, cancelled);
  }

  /** @param {Pending} item @param {{id?: number, error?: ChatErrorInfo}} [extra] */
  _outgoing(item, extra = {}) {
    this._host.emit('outgoing', {
      messageId: /** @type {ClientMessageId} */ (item.messageId),
      conversationId: item.conversationId,
      text: item.text,
      status: item.status,
      ...extra,
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
        if (item.kind === 'send') this._outgoing(item);
        let answer;
        try {
          answer = await this._attempt(item, transport);
        } catch (error) {
          const info = errorInfo(error);
          if (RETRYABLE.has(info.code)) {
            failures += 1;
            item.status = 'queued';
            if (item.kind === 'send') this._outgoing(item, { error: info });
            await sleep(this._host.retryDelay(failures), this._wake.signal);
          } else {
            this._queue.shift();
            this._refused(item, info);
          }
          continue;
        }
        this._queue.shift();
        failures = 0;
        item.status = 'sent';
        if (item.kind === 'send') this._stored(item, answer);
        item.resolve(answer);
      }
    } finally {
      this._pumping = false;
    }
  }

  /**
   * One try of the item at the head of the queue: its answer, or a throw.
   * @param {Pending} item @param {Transport} transport @returns {Promise<any>}
   */
  async _attempt(item, transport) {
    const { conversationId } = item;
    if (item.kind === 'send') {
      return transport.call('message:send', {
        conversationId, text: item.text, messageId: item.messageId, ...item.options,
      });
    }
    if (item.id === null) {
      // It waited for its send, which is done now: stored, or refused.
      const done = item.messageId === null ? undefined : this._done.get(item.messageId);
      if (typeof done === 'number') {
        item.id = done;
      } else if (item.kind === 'delete') {
        return { id: null, conversationId, deletedBy: null, deletedAt: null }; // never stored: nothing to delete
      } else {
        throw new ChatError('NOT_FOUND', `that message was never stored: ${done ? done.message : 'unknown'}`);
      }
    }
    if (item.kind === 'edit') return transport.call('message:edit', { conversationId, id: item.id, text: item.text });
    try {
      return await transport.call('message:delete', { conversationId, id: item.id });
    } catch (error) {
      // Deleted already: by an earlier try whose answer was lost, or by someone else.
      if (error instanceof ChatError && error.code === 'CONFLICT') {
        return { id: item.id, conversationId, deletedBy: null, deletedAt: null, alreadyDeleted: true };
      }
      throw error;
    }
  }

  /** Refused for good. @param {Pending} item @param {ChatErrorInfo} info */
  _refused(item, info) {
    const error = new ChatError(info.code, info.message);
    item.status = 'failed';
    if (item.kind === 'send') {
      this._outgoing(item, { error: info });
      this._remember(/** @type {ClientMessageId} */ (item.messageId), error);
    }
    item.reject(error);
  }

  /** @param {ClientMessageId} messageId @param {number | ChatError} outcome */
  _remember(messageId, outcome) {
    this._done.set(messageId, outcome);
    bound(this._done);
  }

  /** Our stored message, as the others get it. @param {Pending} item @param {SendAck} ack */
  _stored(item, ack) {
    const messageId = /** @type {ClientMessageId} */ (item.messageId);
    this._remember(messageId, ack.id);
    const identity = this._host.identity();
    /** @type {ChatMessage} */
    const message = {
      id: ack.id,
      messageId,
      conversationId: item.conversationId,
      userId: identity ? identity.userId : '',
      senderName: identity ? identity.name : '',
      text: item.text,
      createdAt: ack.createdAt,
    };
    const { replyTo, mentions, mentionsEveryone } = item.options || {};
    if (replyTo !== undefined) message.replyTo = { id: replyTo };
    if (mentions !== undefined) message.mentions = mentions;
    if (mentionsEveryone) message.mentionsEveryone = true;
    this._host.onSent(message);
    this._outgoing(item, { id: ack.id });
  }
}
