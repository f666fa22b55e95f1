// ChatManager's calls on messages after they are sent (edit, delete, their versions,
// pins) and on a conversation's members (add, remove, leave for good, roles), and
// the server events that tell the page of them: docs/protocol.md, "Messages after
// they are sent". ChatManager extends this class; chat-manager.js keeps to the
// connection, the conversations and what came before.
//
// Edits and deletions go through the outbox, in order behind the sends before them,
// so they wait while offline and are retried; every other call here is made at once
// on the transport that carries the session (the socket, or REST on the fallback) and
// is never queued: with neither it is a ChatError('OFFLINE').

import { Emitter } from './emitter.js';
import { ChatError } from './errors.js';
import { isObject } from './util.js';

/** @typedef {import('./types.js').ChatEvents} ChatEvents */
/** @typedef {import('./types.js').Identity} Identity */
/** @typedef {import('./types.js').MemberChange} MemberChange */
/** @typedef {import('./types.js').MessageDeletion} MessageDeletion */
/** @typedef {import('./types.js').MessageEdit} MessageEdit */
/** @typedef {import('./types.js').MessageRef} MessageRef */
/** @typedef {import('./types.js').MessageVersions} MessageVersions */
/** @typedef {import('./types.js').PinResult} PinResult */
/** @typedef {import('./types.js').Role} Role */
/** @typedef {import('./types.js').UserId} UserId */

export class ChatActions extends Emitter {
  constructor() {
    super();
    // The parts these calls use, made by ChatManager's constructor.
    /** @type {Identity | null} who the server says we are */
    this.identity = null;
    /** @type {import('./outbox.js').Outbox} */
    this._outbox = /** @type {any} */ (null);
    /** @type {import('./conversations.js').Conversations} */
    this._conversations = /** @type {any} */ (null);
    /** @type {import('./presence.js').Presence} */
    this._presence = /** @type {any} */ (null);
  }

  /**
   * One operation on the transport that carries the session (ChatManager's).
   * @param {string} name @param {Record<string, unknown>} payload @returns {Promise<any>}
   */
  _call(name, payload) {
    return Promise.reject(new ChatError('INTERNAL', `${name}: no transport`));
  }

  // -- messages after they are sent ---------------------------------------------------

  /**
   * Replace a message's text: our own, within the server's edit window. Queued like a
   * send, behind the sends before it; retried with the same text while offline. The
   * others hear `messageUpdated`; the same text again resolves `changed: false`.
   * @param {number} conversationId
   * @param {MessageRef} id its server id, or `{ messageId }` of a send of ours (it may be
   *                        queued still: the edit waits for its id)
   * @param {string} text
   * @returns {Promise<MessageEdit>}
   */
  editMessage(conversationId, id, text) {
    return this._outbox.edit(conversationId, id, text);
  }

  /**
   * Delete a message: our own, or anyone's as an owner or admin. Queued like a send;
   * a message deleted already counts as done (`alreadyDeleted`). One of ours never
   * sent is only taken out of the queue (`id: null`; its send rejects CANCELLED). The
   * others hear `messageDeleted`.
   * @param {number} conversationId @param {MessageRef} id
   * @returns {Promise<MessageDeletion>}
   */
  deleteMessage(conversationId, id) {
    return this._outbox.delete(conversationId, id);
  }

  /**
   * The texts a message's edits replaced, oldest first (owners and admins). Not queued.
   * @param {number} conversationId @param {number} id
   * @returns {Promise<MessageVersions>}
   */
  async messageVersions(conversationId, id) {
    return this._call('message:versions', { conversationId, id });
  }

  /**
   * Pin a message (owners and admins, or either member of a conversation of two). Not
   * queued. The others hear `messagePinned`.
   * @param {number} conversationId @param {number} id
   * @returns {Promise<PinResult>}
   */
  async pinMessage(conversationId, id) {
    return this._call('message:pin', { conversationId, id });
  }

  /**
   * Unpin a message, by the same rule. Not queued. The others hear `messageUnpinned`.
   * @param {number} conversationId @param {number} id
   * @returns {Promise<PinResult>}
   */
  async unpinMessage(conversationId, id) {
    return this._call('message:unpin', { conversationId, id });
  }

  // -- members ------------------------------------------------------------------------

  /**
   * Add a member (owners and admins). Not queued. The room hears `memberAdded`, the
   * user `conversationAdded`.
   * @param {number} conversationId @param {UserId} userId
   * @returns {Promise<MemberChange>}
   */
  async addMember(conversationId, userId) {
    return this._call('member:add', { conversationId, userId });
  }

  /**
   * Remove a member (owners and admins; admins and owners only by an owner). Our own
   * id is leaving for good, as `leaveConversation`. Not queued. The room hears
   * `memberRemoved`.
   * @param {number} conversationId @param {UserId} userId
   * @returns {Promise<MemberChange>}
   */
  async removeMember(conversationId, userId) {
    const result = await this._call('member:remove', { conversationId, userId });
    const me = this.identity;
    if (me && String(me.userId) === String(userId)) this._left(conversationId);
    return result;
  }

  /**
   * Leave a conversation for good: we are a member no more, and it is no longer
   * rejoined (`leave()` only leaves its room). Not queued. The last owner leaving
   * hands the role on.
   * @param {number} conversationId
   * @returns {Promise<MemberChange>}
   */
  async leaveConversation(conversationId) {
    const me = this.identity;
    if (!me) throw new ChatError('OFFLINE', 'not connected');
    return this.removeMember(conversationId, me.userId);
  }

  /**
   * Set a member's role: 'owner', 'admin' or 'member' (owners and admins; owners
   * only by an owner). Not queued. The room hears `memberUpdated`.
   * @param {number} conversationId @param {UserId} userId @param {Role} role
   * @returns {Promise<MemberChange>}
   */
  async setRole(conversationId, userId, role) {
    return this._call('member:role', { conversationId, userId, role });
  }

  /** We left a conversation for good: not rejoined, our typing there ends. @param {number} conversationId */
  _left(conversationId) {
    this._conversations.close(conversationId);
    this._presence.stopTyping(conversationId, false);
  }
}

/**
 * The server events of this module, from the socket and the long-poll alike, and the
 * page event each becomes (`member:removed` is Conversations', which stops rejoining
 * a conversation we were removed from).
 * @param {ChatActions} manager @returns {Record<string, (data: any) => void>}
 */
export function changeEvents(manager) {
  /** @param {keyof ChatEvents} event @returns {(data: any) => void} */
  const about = (event) => (data) => {
    if (isObject(data) && Number.isSafeInteger(data.conversationId)) manager._emit(event, /** @type {any} */ (data));
  };
  return {
    'message:updated': about('messageUpdated'),
    'message:deleted': about('messageDeleted'),
    'message:pinned': about('messagePinned'),
    'message:unpinned': about('messageUnpinned'),
    'member:added': about('memberAdded'),
    'member:updated': about('memberUpdated'),
  };
}
