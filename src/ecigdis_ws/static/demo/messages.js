// The message list of the demo page, and the reactions and receipts on it.

import { bodyElement, editedMark, mentionsMe, quoteElement } from './message-parts.js';
import { $, isMe, key, people, showError, view } from './state.js';
import { showPinned, toolButtons } from './tools.js';

// The picker's emoji (any other one still shows as a chip when someone used it).
export const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];

// The message list shows the active conversation: its stored messages in server-id
// order (each an <li data-id>), then our sends not stored yet. show() builds it whole;
// after that a message is one node inserted at its place, and a reaction, a receipt
// or a send's status touches only its own node, however long the list is.

/** The "Seen by" shown: reader (as text) -> the <li> of the last message they read. */
const seenAt = new Map();

/** No conversation to show. */
export function clearMessages() {
  $('#messages').replaceChildren();
  seenAt.clear();
}

export function renderMessages() {
  const entry = view.conversations.get(view.active);
  const list = $('#messages');
  if (!entry) return;
  list.replaceChildren();
  seenAt.clear();
  const stored = [...entry.messages.values()].sort((a, b) => a.id - b.id);
  for (const message of stored) list.append(messageElement(message));
  for (const [messageId, item] of view.pending) {
    if (item.conversationId === view.active) list.append(pendingElement(messageId, item));
  }
  for (const userId of entry.readers.keys()) placeReceipt(entry, userId);
  showHistoryEdge(entry);
  list.scrollTop = list.scrollHeight; // a conversation opens at its newest message
}

/** Above the first message: "Loading older messages…" or "Start of the conversation" (CSS). */
export function showHistoryEdge(entry) {
  $('#messages').dataset.older = entry.older;
}

/**
 * A page of older messages of the active conversation, all older than those shown:
 * put above them, the list kept where it was (the message on top stays in place).
 */
export function insertOlder(entry, messages) {
  const list = $('#messages');
  const anchor = list.querySelector('li[data-id]');
  const before = anchor ? anchor.getBoundingClientRect().top : 0;
  const fragment = document.createDocumentFragment();
  for (const message of messages) fragment.append(messageElement(message));
  list.prepend(fragment);
  showHistoryEdge(entry);
  // Readers whose last read lies in the new page: their "Seen by" shows now.
  for (const userId of entry.readers.keys()) placeReceipt(entry, userId);
  if (anchor) list.scrollTop += anchor.getBoundingClientRect().top - before;
}

function isAtBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** A new message of the active conversation: one node, at its place by id. */
export function insertMessage(entry, message) {
  const list = $('#messages');
  const atBottom = isAtBottom(list);
  pendingNode(message.messageId)?.remove(); // our send, stored now
  const item = messageElement(message);
  const before = shownAtOrBefore(message.id);
  if (before) before.after(item);
  else list.prepend(item);
  // Readers at or past it whose "Seen by" stands on an older message move to it.
  for (const [userId, upTo] of entry.readers) {
    const at = seenAt.get(userId);
    if (upTo >= message.id && (!at || Number(at.dataset.id) < message.id)) placeReceipt(entry, userId);
  }
  if (atBottom || entry.messages.size < 20) list.scrollTop = list.scrollHeight;
}

/**
 * The shown message with the highest id not above `id`, or null: a walk back from
 * the newest, where nearly every message arrives (one out of order goes a few back).
 */
function shownAtOrBefore(id) {
  let item = $('#messages').lastElementChild;
  while (item && (!item.dataset.id || Number(item.dataset.id) > id)) item = item.previousElementSibling;
  return item;
}

function pendingElement(messageId, item) {
  return messageElement({
    messageId, text: item.text, userId: view.me.userId, senderName: view.me.name,
  }, item.status);
}

/** The node of one of our sends not stored yet, or null (they are the list's last). */
function pendingNode(messageId) {
  for (let item = $('#messages').lastElementChild; item && !item.dataset.id; item = item.previousElementSibling) {
    if (item.dataset.messageId === key(messageId)) return item;
  }
  return null;
}

/** A send of the active conversation changed status: its own node only. */
export function showOutgoing(messageId, item) {
  const node = pendingNode(messageId);
  if (item.status === 'sent') {
    node?.remove(); // the stored message took its place (`message` comes first)
    return;
  }
  if (node) {
    showStatus(node, item.status);
  } else {
    const list = $('#messages');
    list.append(pendingElement(messageId, item));
    list.scrollTop = list.scrollHeight;
  }
}

/** @param {HTMLElement} item a send's node @param {string} status queued, sending or failed */
function showStatus(item, status) {
  item.classList.toggle('failed', status === 'failed');
  item.classList.toggle('pending', status !== 'failed');
  item.querySelector('.status').textContent = status === 'failed' ? 'not sent'
    : status === 'sending' ? 'sending…' : 'queued (offline)';
}

function messageElement(message, status) {
  const item = document.createElement('li');
  item.className = 'message';
  item.classList.toggle('mine', isMe(message.userId));
  item.dataset.messageId = key(message.messageId);
  const meta = document.createElement('div');
  meta.className = 'meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = message.senderName;
  const time = document.createElement('time');
  meta.append(sender, time);
  item.append(meta);
  if (message.replyTo) item.append(quoteElement(message.replyTo));
  item.append(bodyElement(message));
  if (status) {
    const note = document.createElement('span');
    note.className = 'status';
    item.append(note);
    showStatus(item, status);
    return item;
  }
  item.dataset.id = String(message.id);
  item.classList.toggle('deleted', Boolean(message.deleted));
  item.classList.toggle('edited', Boolean(message.editedAt) && !message.deleted);
  item.classList.toggle('mentions-me', !message.deleted && mentionsMe(message));
  time.dateTime = message.createdAt;
  time.textContent = new Date(message.createdAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const edited = editedMark(message);
  if (edited) time.after(edited);
  const seen = document.createElement('div');
  seen.className = 'seen-by';
  if (message.deleted) {
    item.append(seen); // nothing to react to, answer or change
    return item;
  }
  const row = document.createElement('div');
  row.className = 'row';
  const reactions = document.createElement('span');
  reactions.className = 'reactions';
  renderReactions(reactions, message.id);
  row.append(reactions);
  meta.append(...picker(item, message)); // beside the time: no line of its own
  item.append(row, seen);
  const entry = view.conversations.get(message.conversationId);
  showPinned(item, Boolean(entry && entry.pinned.includes(message.id)));
  return item;
}

/** A shown message changed (edited, deleted, its quote): its node built anew, in place. */
export function refreshMessage(entry, id) {
  if (entry.id !== view.active) return;
  const old = document.querySelector(`#messages li[data-id="${id}"]`);
  const message = entry.messages.get(id);
  if (!old || !message) return;
  const item = messageElement(message);
  old.replaceWith(item);
  // The "Seen by" that stood on the old node stands on the new one.
  for (const [userId, at] of seenAt) if (at === old) seenAt.set(userId, item);
  if (seenAt.size > 0) renderSeenBy(item);
}

// -- the reaction picker -----------------------------------------------------------------
// Shown while the pointer is over the message; by keyboard or by a tap, with its
// toggle button (always there on a touch screen, shown on hover or focus otherwise).
// Escape closes it; a click anywhere else too.

/** The toggle and the picker of one message, its tools beside the emoji. */
function picker(item, message) {
  const messageId = message.id;
  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.className = 'react-toggle';
  toggle.title = 'Add a reaction';
  toggle.setAttribute('aria-label', 'Add a reaction');
  toggle.setAttribute('aria-expanded', 'false');
  toggle.textContent = '☺+';
  toggle.addEventListener('click', () => setPicking(item, !item.classList.contains('picking')));
  const choices = document.createElement('div');
  choices.className = 'picker';
  choices.setAttribute('role', 'group');
  choices.setAttribute('aria-label', 'Reactions');
  for (const emoji of REACTIONS) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'react';
    button.dataset.emoji = emoji;
    button.title = `react ${emoji}`;
    button.setAttribute('aria-label', `react ${emoji}`);
    button.textContent = emoji;
    button.addEventListener('click', (event) => {
      react(messageId, emoji);
      setPicking(item, false);
      // By keyboard (no pointer, detail 0) the focus goes back to the toggle; a click
      // or a tap leaves nothing focused, so the picker hides once the pointer leaves.
      if (event.detail === 0) toggle.focus();
      else button.blur();
    });
    choices.append(button);
  }
  const tools = document.createElement('span');
  tools.className = 'tools';
  tools.append(...toolButtons(message, () => setPicking(item, false)));
  choices.append(tools);
  item.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !item.classList.contains('picking')) return;
    setPicking(item, false);
    toggle.focus();
  });
  return [toggle, choices];
}

function setPicking(item, on) {
  if (on) for (const other of document.querySelectorAll('#messages li.picking')) setPicking(other, false);
  item.classList.toggle('picking', on);
  item.querySelector('.react-toggle').setAttribute('aria-expanded', String(on));
}

document.addEventListener('click', (event) => {
  for (const open of document.querySelectorAll('#messages li.picking')) {
    if (!open.contains(event.target)) setPicking(open, false);
  }
});

function renderReactions(element, messageId) {
  element.replaceChildren();
  for (const [emoji, users] of view.reactions.get(messageId) || []) {
    if (users.size === 0) continue;
    const chip = document.createElement('span');
    chip.className = 'reaction';
    chip.classList.toggle('mine', view.me !== null && users.has(key(view.me.userId)));
    chip.dataset.emoji = emoji;
    chip.dataset.count = String(users.size);
    chip.title = people(users);
    chip.textContent = `${emoji} ${users.size}`;
    element.append(chip);
  }
}

/** "Seen by Bob" under the last message a reader has read: it moves from node to node. */
export function placeReceipt(entry, userId) {
  const target = shownAtOrBefore(entry.readers.get(userId));
  const before = seenAt.get(userId) || null;
  if (target === before) return;
  if (target) seenAt.set(userId, target);
  else seenAt.delete(userId);
  if (before) renderSeenBy(before);
  if (target) renderSeenBy(target);
}

function renderSeenBy(item) {
  const readers = [];
  for (const [userId, at] of seenAt) if (at === item) readers.push(userId);
  // A reader whose name this page has not learnt is counted ("and 1 other"), never an id.
  item.querySelector('.seen-by').textContent = readers.length === 0 ? '' : `Seen by ${people(readers)}`;
}

/** Names may have come late (with presence, or a member list): the receipts shown say them anew. */
export function renameReaders() {
  for (const item of new Set(seenAt.values())) renderSeenBy(item);
}

export function applyReaction(messageId, userId, emoji, action) {
  let byEmoji = view.reactions.get(messageId);
  if (!byEmoji) {
    byEmoji = new Map();
    view.reactions.set(messageId, byEmoji);
  }
  let users = byEmoji.get(emoji);
  if (!users) {
    users = new Set();
    byEmoji.set(emoji, users);
  }
  if (action === 'added') users.add(key(userId));
  else users.delete(key(userId));
  const element = document.querySelector(`#messages li[data-id="${messageId}"] .reactions`);
  if (element) renderReactions(element, messageId);
}

export function seedReactions(messageId, reactions) {
  const byEmoji = new Map();
  for (const { emoji, userIds } of reactions) byEmoji.set(emoji, new Set(userIds.map(key)));
  view.reactions.set(messageId, byEmoji);
}

async function react(messageId, emoji) {
  try {
    const { action } = await view.manager.react(view.active, messageId, emoji);
    applyReaction(messageId, view.me.userId, emoji, action);
  } catch (error) {
    showError('#chat-error', error);
  }
}

