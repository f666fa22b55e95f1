// The one cursor (docs/protocol.md, "Away and back"): a position in the server's
// event log, given by every join's answer and every long-poll answer, in one number
// space. A rejoin with it replays every change of the conversation after it: new
// messages, edits, deletions, pins, renames and reactions, where `since` (a message
// id) can only replay new messages.
//
// Kept per conversation: the cursor of a conversation's own join answer is a position
// before which the socket has had all of it (the server takes it once the socket is
// in the room); a join of another conversation later promises nothing of this one.
// The long-poll covers every conversation of ours, so each answer's cursor moves
// every conversation that has one on, and the fallback polls from the oldest of them.

import { ChatError } from './errors.js';

/** @typedef {import('./conversations.js').Conversation} Conversation */
/** @typedef {import('./socket-transport.js').SocketTransport} SocketTransport */

/** A cursor the server gave: a decimal position. @param {unknown} cursor @returns {cursor is string} */
function isCursor(cursor) {
  return typeof cursor === 'string' && /^\d+$/.test(cursor);
}

/** The earlier of two positions. @param {string} a @param {string} b @returns {string} */
function earlier(a, b) {
  if (a.length !== b.length) return a.length < b.length ? a : b;
  return a < b ? a : b;
}

export class Cursors {
  constructor() {
    /** @type {Map<number, string>} each conversation's, from its last complete join or the poll */
    this._kept = new Map();
    /** @type {Map<number, string>} a join's answer, kept once the join is complete */
    this._answered = new Map();
  }

  /** The cursor to rejoin a conversation with, or null (join with `since`). @param {number} id */
  of(id) {
    return this._kept.get(id) ?? null;
  }

  /**
   * A join was answered; its cursor is kept once the join settles (after the history a
   * capped replay leaves to the client). No cursor: a server without them.
   * @param {number} id @param {unknown} cursor
   */
  answered(id, cursor) {
    if (isCursor(cursor)) this._answered.set(id, cursor);
    else this._answered.delete(id);
  }

  /** The join of a conversation is complete: its answer's cursor is the one to rejoin with. @param {number} id */
  settled(id) {
    const cursor = this._answered.get(id);
    if (cursor === undefined) return;
    this._answered.delete(id);
    this._kept.set(id, cursor);
  }

  /**
   * A long-poll answered with `cursor`: every conversation of ours is had up to it.
   * Null: the server refused the cursor polled with (another database); all are
   * forgotten, and the next joins and polls start afresh.
   * @param {unknown} cursor
   */
  polled(cursor) {
    if (cursor === null) {
      this._kept.clear();
      this._answered.clear();
    } else if (isCursor(cursor)) {
      for (const id of this._kept.keys()) this._kept.set(id, cursor);
    }
  }

  /** The server refused a conversation's cursor: it rejoins with `since`. @param {number} id */
  forget(id) {
    this._kept.delete(id);
  }

  /**
   * Where the long-poll starts: the oldest cursor of these conversations (the open
   * ones), null when none has one.
   * @param {Iterable<number>} ids @returns {string | null}
   */
  oldest(ids) {
    /** @type {string | null} */
    let oldest = null;
    for (const id of ids) {
      const cursor = this._kept.get(id);
      if (cursor !== undefined) oldest = oldest === null ? cursor : earlier(oldest, cursor);
    }
    return oldest;
  }
}

/**
 * conversation:join with the conversation's cursor when it has one (every change
 * after it is replayed: edits, deletions, pins, renames, not only messages), else
 * with `since` (a server without cursors, or a first join). The answer's cursor is
 * kept once the join settles. A cursor replay the server cut (`resync`) goes on as a
 * capped `since` replay does, from history after the highest id seen (the answer is
 * given that `replayedUpTo`); edits of older messages may be missed, so the page
 * hears `resync`.
 * @param {SocketTransport} socket @param {Cursors} cursors @param {Conversation} conversation
 * @param {(event: 'resync', data: {cursor: string | null, conversationId: number}) => void} emit
 * @returns {Promise<any>} the join's answer
 */
export async function joinWithCursor(socket, cursors, conversation, emit) {
  const { id } = conversation;
  const cursor = cursors.of(id);
  const since = conversation.highest ?? conversation.since;
  let reply;
  try {
    // Both when we have both: the messages by id from the messages table, the
    // other changes by the cursor (docs/protocol.md, "Away and back").
    reply = await socket.call('conversation:join', cursor === null
      ? { conversationId: id, since: since ?? undefined }
      : { conversationId: id, since: since ?? undefined, cursor });
  } catch (error) {
    if (cursor === null || !(error instanceof ChatError) || error.code !== 'INVALID_PAYLOAD') throw error;
    cursors.forget(id); // a cursor this server never gave (another database): by id again
    return joinWithCursor(socket, cursors, conversation, emit);
  }
  cursors.answered(id, reply.cursor);
  if (cursor !== null && reply.resync === true && reply.replayedUpTo === undefined) {
    emit('resync', { cursor: isCursor(reply.cursor) ? reply.cursor : null, conversationId: id });
    const after = conversation.highest ?? since;
    if (typeof after === 'number') return { ...reply, replayedUpTo: after };
  }
  return reply;
}
