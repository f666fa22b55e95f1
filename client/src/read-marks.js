// Read marks: "read up to message N" is kept on the conversation until a transport
// takes it, and a mark never moves back (neither does the server's).

import { ChatError, RETRYABLE } from './errors.js';

/** @typedef {import('./conversations.js').Conversation} Conversation */
/** @typedef {import('./outbox.js').Transport} Transport */

/** Keep a read mark until sent. @param {Conversation} conversation @param {number} messageId */
export function keepReadMark(conversation, messageId) {
  if (conversation.readUpTo === null || messageId > conversation.readUpTo) conversation.readUpTo = messageId;
}

/** Send the conversation's read mark, if it has one. @param {Conversation} conversation @param {Transport} transport */
export async function sendReadMark(conversation, transport) {
  const messageId = conversation.readUpTo;
  if (messageId === null) return;
  try {
    await transport.call('message:read', { conversationId: conversation.id, messageId });
  } catch (error) {
    // Kept in readUpTo, to send again on the next (re)connection: unless the socket's
    // server refused it for good (a REST refusal was kept as well, as before).
    if (!(error instanceof ChatError) || RETRYABLE.has(error.code) || error.status !== undefined) return;
  }
  if (conversation.readUpTo === messageId) conversation.readUpTo = null;
}
