// The composer: a textarea where Enter sends and Shift+Enter starts a new line, growing
// with its lines up to its CSS max-height. It can hold a draft of another kind: an
// edit of one of our messages (Send says Save; ArrowUp in an empty composer edits our
// last one) or an answer to a message (the quote shows above it). Escape drops the
// draft; so does the message's deletion, or showing another conversation.

import { applyEdit } from './changes.js';
import { excerptOf } from './message-parts.js';
import { handleMentionKey, mentionsIn, updateMentionPicker } from './mentions.js';
import { $, isMe, nameOf, showError, view } from './state.js';

/** The composer as tall as its text. */
function fitComposer() {
  const composer = $('#composer');
  composer.style.height = 'auto';
  composer.style.height = `${composer.scrollHeight + composer.offsetHeight - composer.clientHeight}px`;
}

/** The composer edits (`kind` 'edit') or answers ('reply') message `id` of the active conversation. */
export function startDraft(kind, id) {
  const entry = view.conversations.get(view.active);
  const message = entry ? entry.messages.get(id) : null;
  if (!message || message.deleted) return;
  view.draft = { kind, conversationId: entry.id, id };
  $('#draft').hidden = false;
  $('#draft').dataset.kind = kind;
  $('#draft-what').textContent = kind === 'edit' ? 'Editing your message'
    : `Replying to ${message.senderName || nameOf(message.userId)}`;
  $('#draft-text').textContent = excerptOf(message.text);
  $('#send').textContent = kind === 'edit' ? 'Save' : 'Send';
  if (kind === 'edit') $('#composer').value = message.text;
  fitComposer();
  const composer = $('#composer');
  composer.focus();
  composer.setSelectionRange(composer.value.length, composer.value.length);
}

/** Back to a plain new message; an edit's text leaves the composer with it. */
export function dropDraft() {
  if (!view.draft) return;
  if (view.draft.kind === 'edit') $('#composer').value = '';
  view.draft = null;
  $('#draft').hidden = true;
  $('#send').textContent = 'Send';
  fitComposer();
}

/** Another conversation is shown: a draft of the one before does not follow it. */
export function conversationShown() {
  if (view.draft && view.draft.conversationId !== view.active) dropDraft();
}

document.addEventListener('demo:draft-gone', dropDraft);
$('#draft-cancel').addEventListener('click', () => {
  dropDraft();
  $('#composer').focus();
});

/** The newest message of ours in the active conversation that can still be edited, or null. */
function ownLast() {
  const entry = view.conversations.get(view.active);
  let last = null;
  for (const message of entry ? entry.messages.values() : []) {
    if (isMe(message.userId) && !message.deleted && (!last || message.id > last.id)) last = message;
  }
  return last;
}

$('#composer').addEventListener('input', () => {
  fitComposer();
  updateMentionPicker();
  if (view.active !== null && $('#composer').value) view.manager.typing(view.active);
});

$('#composer').addEventListener('keydown', (event) => {
  if (handleMentionKey(event)) return; // the @ picker's arrows, Enter, Tab and Escape
  if (event.key === 'Escape' && view.draft) {
    event.preventDefault();
    dropDraft();
    return;
  }
  if (event.key === 'ArrowUp' && !$('#composer').value && !view.draft) {
    const last = ownLast();
    if (!last) return;
    event.preventDefault();
    startDraft('edit', last.id);
    return;
  }
  // (not while an input method composes: its Enter picks a candidate)
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  $('#composer-form').requestSubmit();
});

$('#composer-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('#composer').value;
  if (!text.trim() || view.active === null) return;
  const draft = view.draft;
  const entry = view.conversations.get(view.active);
  $('#composer').value = '';
  dropDraft();
  fitComposer();
  showError('#chat-error', null);
  const failed = (error) => showError('#chat-error', error);
  if (draft && draft.kind === 'edit') {
    view.manager.stopTyping(view.active); // a send ends typing on the server; an edit does not
    view.manager.editMessage(draft.conversationId, draft.id, text).then(applyEdit, failed);
    return;
  }
  const options = mentionsIn(entry, text);
  if (draft) options.replyTo = draft.id;
  view.manager.send(view.active, text, options).catch(failed);
});
