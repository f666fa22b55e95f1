// Changes to messages after they are sent, whoever made them and however they came
// (live, a rejoin's replay, the long-poll, our own call's answer): edits, deletions
// and pins, applied to the conversation's state and to the one node they touch. Each
// may come twice (our own answer and the event; a replay after a reconnect), so each
// applies only over an older state. And the pinned bar above the message list.

import { excerptOf, showMessage } from './message-parts.js';
import { refreshMessage } from './messages.js';
import { showPinned } from './tools.js';
import { $, conversation, nameOf, view } from './state.js';

const version = (message) => message.version || 1; // a message never edited is version 1

/** `message:updated` (or an edit's answer): the new text, over an older version only. */
export function applyEdit({ id, conversationId, text, editedAt, version: next }) {
  const entry = conversation(conversationId);
  const message = entry.messages.get(id);
  if (!message || message.deleted || version(message) >= next) return;
  Object.assign(message, { text, editedAt, version: next });
  refreshMessage(entry, id);
  requote(entry, id);
  if (entry.pinned.includes(id)) renderPinned();
}

/** `message:deleted` (or a delete's answer): a tombstone in its place; its pin, reactions and quotes go. */
export function applyDelete({ id, conversationId, deletedBy, deletedAt }) {
  const entry = conversation(conversationId);
  const message = entry.messages.get(id);
  if (message && !message.deleted) {
    Object.assign(message, { text: '', deleted: true, deletedBy, deletedAt });
    delete message.mentions;
    delete message.mentionsEveryone;
    view.reactions.delete(id);
    refreshMessage(entry, id);
  }
  requote(entry, id);
  setPinned(entry, entry.pinned.filter((pinned) => pinned !== id));
  // Editing or answering it in the composer: that draft has nothing to act on now.
  if (view.draft && view.draft.conversationId === conversationId && view.draft.id === id) {
    document.dispatchEvent(new CustomEvent('demo:draft-gone'));
  }
}

/** `message:pinned` / `message:unpinned` (or our own pin's answer). */
export function applyPin({ id, conversationId }, pinned) {
  const entry = conversation(conversationId);
  const others = entry.pinned.filter((known) => known !== id);
  setPinned(entry, pinned ? [...others, id] : others);
}

/** The pinned ids as the server listed them (a join, the conversation list), or as changed. */
export function setPinned(entry, ids) {
  const before = new Set(entry.pinned);
  entry.pinned = ids;
  entry.pinShown = 0; // the newest pin first
  if (entry.id !== view.active) return;
  for (const id of new Set([...before, ...ids])) {
    const item = document.querySelector(`#messages li[data-id="${id}"]`);
    if (item) showPinned(item, ids.includes(id));
  }
  renderPinned();
}

/** Replies quoting message `id` show it as it is now (edited, or deleted). */
function requote(entry, id) {
  const quoted = entry.messages.get(id);
  for (const message of entry.messages.values()) {
    if (!message.replyTo || message.replyTo.id !== id) continue;
    if (!quoted || quoted.deleted) message.replyTo = { id, userId: message.replyTo.userId, senderName: message.replyTo.senderName, excerpt: '', deleted: true };
    else message.replyTo = { ...message.replyTo, excerpt: excerptOf(quoted.text) };
    refreshMessage(entry, message.id);
  }
}

/** A reply of ours carries only the id it answers: the rest from the message we have. */
export function completeReply(entry, message) {
  if (!message.replyTo || message.replyTo.senderName !== undefined) return;
  const quoted = entry.messages.get(message.replyTo.id);
  if (!quoted) return;
  message.replyTo = quoted.deleted
    ? { id: quoted.id, userId: quoted.userId, senderName: quoted.senderName, excerpt: '', deleted: true }
    : { id: quoted.id, userId: quoted.userId, senderName: quoted.senderName, excerpt: excerptOf(quoted.text) };
}

// -- the pinned bar ------------------------------------------------------------------------
// The newest pin, "Pinned 2 of 3" when there are more; a click shows that message in
// the list (when it is loaded) and moves the bar to the next older pin.

export function renderPinned() {
  const entry = view.conversations.get(view.active);
  const bar = $('#pinned');
  if (!entry || entry.pinned.length === 0) {
    bar.hidden = true;
    return;
  }
  const at = entry.pinned.length - 1 - (entry.pinShown % entry.pinned.length);
  const id = entry.pinned[at];
  const message = entry.messages.get(id);
  bar.hidden = false;
  bar.dataset.id = String(id);
  $('#pinned-count').textContent = entry.pinned.length === 1 ? 'Pinned'
    : `Pinned ${at + 1} of ${entry.pinned.length}`;
  $('#pinned-text').textContent = message
    ? `${message.senderName || nameOf(message.userId)}: ${excerptOf(message.text)}`
    : `message #${id} (not loaded)`;
}

$('#pinned').addEventListener('click', () => {
  const entry = view.conversations.get(view.active);
  if (!entry || entry.pinned.length === 0) return;
  showMessage(Number($('#pinned').dataset.id));
  entry.pinShown += 1;
  renderPinned();
});
