// Message text with its http(s) addresses as links, built with DOM nodes only: the
// text a user wrote is never parsed as HTML, and nothing but http: and https: links.

// A candidate: "http://" or "https://" and everything up to white space or a
// character that cannot be in an address written in prose.
const CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that ends a sentence rather than the address ("see https://x.org.").
const TRAILING = /[.,;:!?*_~]+$/;

/**
 * `text` as nodes: text nodes, and an <a> for each http(s) URL in it.
 * @param {string} text @returns {DocumentFragment}
 */
export function linkified(text) {
  const fragment = document.createDocumentFragment();
  let from = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    const address = trimmed(match[0]);
    const url = parsed(address);
    if (!url) continue;
    if (match.index > from) fragment.append(text.slice(from, match.index));
    fragment.append(link(url, address));
    from = match.index + address.length;
  }
  if (from < text.length) fragment.append(text.slice(from));
  return fragment;
}

/** The address without the punctuation after it, and without a ")" it did not open. */
function trimmed(candidate) {
  let address = candidate.replace(TRAILING, '');
  while (address.endsWith(')') && count(address, '(') < count(address, ')')) {
    address = address.slice(0, -1).replace(TRAILING, '');
  }
  return address;
}

function count(text, character) {
  return text.split(character).length - 1;
}

/** The URL when `address` is an http(s) one with a host, else null. */
function parsed(address) {
  let url;
  try {
    url = new URL(address);
  } catch {
    return null;
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname ? url : null;
}

function link(url, address) {
  const anchor = document.createElement('a');
  anchor.href = url.href;
  anchor.textContent = address;
  anchor.target = '_blank';
  anchor.rel = 'noopener noreferrer';
  return anchor;
}
