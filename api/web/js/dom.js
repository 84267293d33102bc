// Small DOM helpers: elements are built with text nodes only (never HTML from
// strings), so nothing the server or a user sends can become markup.

/** `h('td', {class: 'num'}, 'text', child)`: attributes, then children (strings become text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replaces the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** Shows `text` in a status or alert region (empty hides it). */
export function say(element, text, kind = 'info') {
  element.textContent = text;
  element.dataset.kind = kind;
  element.hidden = !text;
}

/** Makes the connection banner follow an api client's status. */
export function connectionBanner(element, onBackOnline = () => {}) {
  let wasOffline = false;
  return (status) => {
    if (status === 'offline') {
      wasOffline = true;
      // For whoever reads the console (the browser tests count these).
      console.warn('cartsource: the server is unreachable');
      say(element, 'The server is unreachable. Retrying every few seconds: your page stays as it was and catches up when it is back.', 'error');
    } else if (wasOffline) {
      wasOffline = false;
      say(element, 'Connected again: the page is up to date.', 'ok');
      onBackOnline();
      setTimeout(() => { if (element.dataset.kind === 'ok') say(element, ''); }, 4000);
    } else {
      say(element, '');
    }
  };
}
