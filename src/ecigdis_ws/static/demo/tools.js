// A message's tools, beside its reactions in the bar that floats over it: reply, edit,
// pin, earlier versions, delete. Each raises a `demo:act` event (actions.js acts on
// it), so the message list needs to know nothing of the composer or the server.
//
// Which tools a person sees follows the server's rules, by CSS on the data the
// conversation carries (demo.css): edit on one's own messages; delete on one's own,
// and on anyone's for owners and admins; pin for owners and admins, or either member
// of a conversation of two; versions for owners and admins, on edited messages. A
// tool shown by mistake is still refused by the server, and the page says why.

const TOOLS = [
  { kind: 'reply', label: 'Reply', glyph: '↩' },
  { kind: 'edit', label: 'Edit', glyph: '✎' },
  { kind: 'pin', label: 'Pin', glyph: '📌' },
  { kind: 'versions', label: 'Earlier versions', glyph: '🕘' },
  { kind: 'delete', label: 'Delete', glyph: '🗑' },
];

/** The tool buttons of a stored message (none on a tombstone); `used()` after a click (the bar closes). */
export function toolButtons(message, used) {
  if (message.deleted) return [];
  return TOOLS.map(({ kind, label, glyph }) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `tool tool-${kind}`;
    button.dataset.tool = kind;
    button.title = label;
    button.setAttribute('aria-label', label);
    button.textContent = glyph;
    button.addEventListener('click', (event) => {
      event.stopPropagation();
      document.dispatchEvent(new CustomEvent('demo:act', {
        detail: { kind, conversationId: message.conversationId, id: message.id },
      }));
      button.blur();
      used();
    });
    return button;
  });
}

/** The pin tool says what it would do: pin, or unpin a pinned message. */
export function showPinned(item, pinned) {
  item.classList.toggle('pinned', pinned);
  const tool = item.querySelector('.tool-pin');
  if (!tool) return;
  const label = pinned ? 'Unpin' : 'Pin';
  tool.title = label;
  tool.setAttribute('aria-label', label);
}
