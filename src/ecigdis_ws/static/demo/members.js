// The active conversation's members with their roles (from the join's member list and
// the member events), what our role lets us do (the data the CSS shows tools by), and
// renaming: the ✎ beside the title, for owners and admins or either member of a pair.

import { $, isMe, isModerator, isPair, knownName, showError, view } from './state.js';

let renamed = () => {};

/** `onRename({ conversationId, title })` is called with a rename's answer. */
export function onRename(callback) {
  renamed = callback;
}

export function renderMembers() {
  const entry = view.conversations.get(view.active);
  const list = $('#members');
  list.replaceChildren();
  const moderator = isModerator(entry);
  const pair = isPair(entry);
  $('#conversation').dataset.moderator = String(moderator);
  $('#conversation').dataset.pinner = String(moderator || pair);
  $('#rename').hidden = !(moderator || pair);
  $('#members-heading').hidden = !entry || !entry.members;
  if (!entry || !entry.members) return;
  const order = { owner: 0, admin: 1, member: 2 };
  const members = [...entry.members.values()]
    .sort((a, b) => order[a.role] - order[b.role] || (a.name || '').localeCompare(b.name || ''));
  for (const member of members) {
    const item = document.createElement('li');
    item.dataset.userId = String(member.userId);
    const name = document.createElement('span');
    // (a member added since the join comes without a name: the one presence or a message taught us)
    name.textContent = `${member.name || knownName(member.userId) || 'someone'}${isMe(member.userId) ? ' (you)' : ''}`;
    item.append(name);
    if (member.role !== 'member') {
      const badge = document.createElement('span');
      badge.className = `role role-${member.role}`;
      badge.textContent = member.role;
      item.append(badge);
    }
    list.append(item);
  }
}

function closeRename() {
  $('#rename-form').hidden = true;
  $('#conversation-title').hidden = false;
}

$('#rename').addEventListener('click', () => {
  const entry = view.conversations.get(view.active);
  if (!entry) return;
  $('#title-input').value = entry.title;
  $('#conversation-title').hidden = true;
  $('#rename').hidden = true;
  $('#rename-form').hidden = false;
  $('#title-input').focus();
  $('#title-input').select();
});

$('#title-input').addEventListener('keydown', (event) => {
  if (event.key !== 'Escape') return;
  closeRename();
  renderMembers();
});

$('#rename-cancel').addEventListener('click', () => {
  closeRename();
  renderMembers();
});

$('#rename-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const conversationId = view.active;
  const title = $('#title-input').value.trim();
  if (!title || conversationId === null) return;
  showError('#chat-error', null);
  try {
    renamed(await view.manager.updateConversation(conversationId, { title }));
  } catch (error) {
    showError('#chat-error', error);
  }
  closeRename();
  renderMembers();
});
