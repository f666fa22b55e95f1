// What a message's tools do (tools.js raises `demo:act`): reply and edit go to the
// composer; delete asks first, in the message itself; pin toggles; versions shows the
// texts the edits replaced (owners and admins: the server refuses anyone else). Each
// answer is applied at once, as the others will get it by event.

import { applyDelete, applyPin } from './changes.js';
import { startDraft } from './composer.js';
import { conversation, showError, view } from './state.js';

const failed = (error) => showError('#chat-error', error);
const node = (id) => document.querySelector(`#messages li[data-id="${id}"]`);

document.addEventListener('demo:act', ({ detail: { kind, conversationId, id } }) => {
  showError('#chat-error', null);
  if (kind === 'reply' || kind === 'edit') startDraft(kind, id);
  else if (kind === 'delete') confirmDelete(conversationId, id);
  else if (kind === 'pin') togglePin(conversationId, id);
  else if (kind === 'versions') showVersions(conversationId, id);
});

function button(className, label, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.className = className;
  element.textContent = label;
  element.addEventListener('click', (event) => {
    event.stopPropagation();
    onClick();
  });
  return element;
}

/** "Delete this message? [Delete] [Cancel]" under the message: a deletion cannot be undone. */
function confirmDelete(conversationId, id) {
  const item = node(id);
  if (!item || item.querySelector('.confirm')) return;
  const confirm = document.createElement('div');
  confirm.className = 'confirm';
  const question = document.createElement('span');
  question.textContent = 'Delete this message for everyone?';
  const yes = button('confirm-delete', 'Delete', () => {
    confirm.remove();
    view.manager.deleteMessage(conversationId, id).then(applyDelete, failed);
  });
  confirm.append(question, yes, button('confirm-cancel', 'Cancel', () => confirm.remove()));
  item.append(confirm);
  yes.focus();
}

function togglePin(conversationId, id) {
  const pinned = conversation(conversationId).pinned.includes(id);
  const call = pinned ? view.manager.unpinMessage(conversationId, id) : view.manager.pinMessage(conversationId, id);
  call.then((answer) => applyPin(answer, answer.pinned), failed);
}

/** The earlier texts under the message, oldest first, each with when it was written. */
async function showVersions(conversationId, id) {
  let answer;
  try {
    answer = await view.manager.messageVersions(conversationId, id);
  } catch (error) {
    failed(error);
    return;
  }
  const item = node(id);
  if (!item) return;
  item.querySelector('.versions')?.remove();
  const panel = document.createElement('div');
  panel.className = 'versions';
  const heading = document.createElement('div');
  heading.className = 'versions-heading';
  heading.textContent = answer.versions.length === 0 ? 'No earlier versions' : 'Earlier versions';
  heading.append(button('versions-close', '×', () => panel.remove()));
  panel.append(heading);
  for (const { version, text, writtenAt } of answer.versions) {
    const line = document.createElement('div');
    line.className = 'version';
    const when = document.createElement('span');
    when.className = 'version-when';
    when.textContent = `v${version} · ${new Date(writtenAt).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })}`;
    const said = document.createElement('span');
    said.className = 'version-text';
    said.textContent = text;
    line.append(when, said);
    panel.append(line);
  }
  item.append(panel);
}
