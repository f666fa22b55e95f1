// The parts of a message after it is sent: the quote of the message it answers, its
// text with mentions highlighted (and links), and the "edited" / "deleted" markers.
// DOM nodes only: what a user wrote is never parsed as HTML.

import { linkified } from './links.js';
import { isMe, key, knownName, nameOf } from './state.js';

// A quote, the pinned bar and the reply being written show this much of a text.
export const EXCERPT_CHARS = 120;

/** @param {string} text @returns {string} */
export function excerptOf(text) {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > EXCERPT_CHARS ? `${line.slice(0, EXCERPT_CHARS - 1)}…` : line;
}

/** "Message deleted", "Message deleted by Alice" or "… by a moderator" (the server API's). */
export function deletedNote(message) {
  const by = message.deletedBy;
  if (by === null) return 'Message deleted by a moderator';
  if (by === undefined || key(by) === key(message.userId)) return 'Message deleted';
  return `Message deleted by ${knownName(by) || 'a moderator'}`;
}

/** The quoted message above a reply; a click shows it in the list. */
export function quoteElement(replyTo) {
  const quote = document.createElement('blockquote');
  quote.className = 'quote';
  quote.dataset.replyTo = String(replyTo.id);
  const sender = document.createElement('span');
  sender.className = 'quote-sender';
  sender.textContent = replyTo.senderName || (replyTo.userId ? nameOf(replyTo.userId) : '');
  const text = document.createElement('span');
  text.className = 'quote-text';
  quote.classList.toggle('deleted', Boolean(replyTo.deleted));
  text.textContent = replyTo.deleted ? 'Message deleted' : excerptOf(replyTo.excerpt || '');
  quote.append(sender, text);
  quote.title = 'Show the message this answers';
  quote.addEventListener('click', () => showMessage(replyTo.id));
  return quote;
}

/** Scrolls the list to a message and flashes it; false when it is not shown. */
export function showMessage(id) {
  const item = document.querySelector(`#messages li[data-id="${id}"]`);
  if (!item) return false;
  item.scrollIntoView({ block: 'center' });
  item.classList.remove('flash');
  void item.offsetWidth; // restarts the animation when shown twice in a row
  item.classList.add('flash');
  return true;
}

/**
 * The names a message calls: "@Name" for each member it mentions whose name we know,
 * and "@everyone" when it mentions the whole conversation.
 * @returns {Map<string, boolean>} the written mention -> whether it calls me
 */
function calls(message) {
  const written = new Map();
  for (const userId of message.mentions || []) {
    const name = knownName(userId);
    if (name) written.set(`@${name}`, isMe(userId));
  }
  if (message.mentionsEveryone) written.set('@everyone', true);
  return written;
}

/** Whether the message calls me, by name or as everyone. */
export const mentionsMe = (message) => !isMe(message.userId)
  && ((message.mentions || []).some(isMe) || Boolean(message.mentionsEveryone));

/** The text as nodes: each mention it made a highlighted <span>, links as links. */
export function textWithMentions(message) {
  const fragment = document.createDocumentFragment();
  const text = message.text;
  const called = calls(message);
  const written = [...called.keys()].sort((a, b) => b.length - a.length); // "@Al Bo" before "@Al"
  let from = 0;
  while (written.length > 0) {
    let at = -1;
    let found = '';
    for (const mention of written) {
      const index = text.indexOf(mention, from);
      if (index !== -1 && (at === -1 || index < at)) {
        at = index;
        found = mention;
      }
    }
    if (at === -1) break;
    fragment.append(linkified(text.slice(from, at)));
    const span = document.createElement('span');
    span.className = 'mention';
    span.classList.toggle('me', called.get(found) === true);
    span.textContent = found;
    fragment.append(span);
    from = at + found.length;
  }
  fragment.append(linkified(text.slice(from)));
  return fragment;
}

/** The text of a message, or its tombstone. */
export function bodyElement(message) {
  const text = document.createElement('div');
  text.className = 'text';
  if (message.deleted) {
    text.classList.add('deleted-note');
    text.textContent = deletedNote(message);
  } else {
    text.append(textWithMentions(message));
  }
  return text;
}

/** "(edited)" beside the time of an edited message, or null. */
export function editedMark(message) {
  if (!message.editedAt || message.deleted) return null;
  const edited = document.createElement('span');
  edited.className = 'edited-mark';
  edited.textContent = '(edited)';
  edited.title = `edited ${new Date(message.editedAt).toLocaleString()}`;
  return edited;
}
