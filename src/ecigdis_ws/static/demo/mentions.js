// The @ picker: typing "@" and the start of a name in the composer lists the
// conversation's members whose names start so (from the join's member list); the
// arrows move, Enter or Tab picks, Escape closes, a click picks. "@everyone" is
// offered to owners and admins in a group, as only they may call everyone. What was
// written is sent as `mentions` (the ids of the members named) and `mentionsEveryone`.

import { $, isMe, isModerator, isPair, view } from './state.js';

// The picker lists at most this many names (typing more of a name narrows it).
const MAX_SHOWN = 8;
// "@" at the start or after a space, then the name typed so far, up to the caret.
const TYPED = /(^|\s)@([^\s@]{0,40})$/;
const EVERYONE = 'everyone';

let choices = []; // [{ userId, name }] shown, userId null for everyone
let chosen = 0;

export const pickerOpen = () => !$('#mention-picker').hidden;

function close() {
  $('#mention-picker').hidden = true;
  choices = [];
}

/** What the composer says: the @ picker for the name being typed at the caret, or closed. */
export function updateMentionPicker() {
  const composer = $('#composer');
  const entry = view.conversations.get(view.active);
  const typed = TYPED.exec(composer.value.slice(0, composer.selectionStart));
  if (!typed || !entry || !entry.members) {
    close();
    return;
  }
  const start = typed[2].toLowerCase();
  const members = [...entry.members.values()]
    .filter((member) => member.name && !isMe(member.userId) && member.name.toLowerCase().startsWith(start))
    .sort((a, b) => a.name.localeCompare(b.name));
  choices = members.slice(0, MAX_SHOWN).map(({ userId, name }) => ({ userId, name }));
  if (isModerator(entry) && !isPair(entry) && EVERYONE.startsWith(start)) choices.push({ userId: null, name: EVERYONE });
  if (choices.length === 0) {
    close();
    return;
  }
  chosen = 0;
  render();
}

function render() {
  const list = $('#mention-picker');
  list.replaceChildren();
  choices.forEach((choice, index) => {
    const item = document.createElement('li');
    item.textContent = `@${choice.name}`;
    item.setAttribute('role', 'option');
    item.setAttribute('aria-selected', String(index === chosen));
    item.classList.toggle('chosen', index === chosen);
    // mousedown, not click: the composer keeps its focus and caret.
    item.addEventListener('mousedown', (event) => {
      event.preventDefault();
      pick(index);
    });
    list.append(item);
  });
  list.hidden = false;
}

/** "@Al" before the caret becomes "@Alice ". */
function pick(index) {
  const composer = $('#composer');
  const caret = composer.selectionStart;
  const before = composer.value.slice(0, caret).replace(/@[^\s@]*$/, `@${choices[index].name} `);
  composer.value = before + composer.value.slice(caret);
  composer.setSelectionRange(before.length, before.length);
  close();
  composer.focus();
}

/** A key in the composer while the picker is open: true when the picker took it. */
export function handleMentionKey(event) {
  if (!pickerOpen()) return false;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    chosen = (chosen + (event.key === 'ArrowDown' ? 1 : choices.length - 1)) % choices.length;
    render();
  } else if ((event.key === 'Enter' || event.key === 'Tab') && !event.isComposing) {
    pick(chosen);
  } else if (event.key === 'Escape') {
    close();
  } else {
    return false;
  }
  event.preventDefault();
  return true;
}

$('#composer').addEventListener('blur', close);

/** The send options for what a text calls: `mentions` (member ids) and `mentionsEveryone`. */
export function mentionsIn(entry, text) {
  const options = {};
  if (!entry || !entry.members) return options;
  const named = [...entry.members.values()]
    .filter((member) => member.name && !isMe(member.userId) && text.includes(`@${member.name}`))
    .map((member) => member.userId);
  if (named.length > 0) options.mentions = named;
  if (text.includes(`@${EVERYONE}`) && isModerator(entry) && !isPair(entry)) options.mentionsEveryone = true;
  return options;
}
