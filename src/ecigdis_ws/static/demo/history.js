// Older messages: the list shows the newest page at first, and scrolling it up to
// its top loads the page before, again and again, until the first message shows.

import { insertOlder, seedReactions, showHistoryEdge } from './messages.js';
import { $, key, showError, view } from './state.js';

// Messages a history page brings: the newest at sign-in, then older ones as the
// list is scrolled to its top (within NEAR_TOP_PX of it).
export const PAGE = 50;
const NEAR_TOP_PX = 80;

/** A message into its conversation's state (not shown yet). */
export function keep(entry, message) {
  if (message.senderName) view.names.set(key(message.userId), message.senderName);
  entry.messages.set(message.id, message);
  // From history (a REST page, a replay, the long-poll) a message brings its
  // reactions; live `reaction` events apply on top of them.
  if (Array.isArray(message.reactions)) seedReactions(message.id, message.reactions);
}

/** The page of messages before the first one shown, above it; 'start' once there is none. */
async function loadOlder() {
  const entry = view.conversations.get(view.active);
  if (!entry || entry.older !== 'more' || entry.messages.size === 0) return;
  let before = Infinity;
  for (const id of entry.messages.keys()) if (id < before) before = id;
  entry.older = 'loading';
  showHistoryEdge(entry);
  let page;
  try {
    page = await view.manager.history(entry.id, { before, limit: PAGE });
  } catch (error) {
    entry.older = 'more'; // the next scroll to the top tries again
    if (view.active === entry.id) showHistoryEdge(entry);
    showError('#chat-error', error);
    return;
  }
  const older = page.filter((message) => message.id < before && !entry.messages.has(message.id));
  for (const message of older) keep(entry, message);
  entry.older = page.length < PAGE ? 'start' : 'more';
  if (view.active !== entry.id) return; // shown when it is (renderMessages)
  insertOlder(entry, older);
  fillList();
}

/** Pages older messages in until the list can scroll (or the start is shown). */
export function fillList() {
  const list = $('#messages');
  if (list.scrollHeight <= list.clientHeight + NEAR_TOP_PX) loadOlder();
}

$('#messages').addEventListener('scroll', () => {
  if ($('#messages').scrollTop < NEAR_TOP_PX) loadOlder();
}, { passive: true });
