// Small DOM and formatting helpers. No inline styles or handlers (the page runs under
// Content-Security-Policy: default-src 'self').

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else if (k === 'style') throw new Error('inline styles are not allowed (CSP)');
    else if (k === 'value' && 'value' in el) el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An HTML element: h('a', {href: '#/x', class: 'y'}, 'text', child…). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Epoch seconds → local date-time text. */
export function fmtDate(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Milliseconds → "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min". */
export function fmtDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** JSON text → indented JSON text (the text itself when it is not JSON). */
export function pretty(text) {
  if (text === undefined || text === null) return '';
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

/** A <pre> block of (pretty) JSON, with a copy button. */
export function codeBlock(text, label) {
  const body = pretty(text);
  const btn = h('button', { type: 'button', class: 'link small', 'aria-label': `Copy ${label || 'JSON'}` }, 'Copy');
  btn.addEventListener('click', () => {
    navigator.clipboard?.writeText(body).then(() => { btn.textContent = 'Copied'; }, () => {});
  });
  return h('div', { class: 'code' },
    h('div', { class: 'code-head' }, h('span', {}, label || ''), btn),
    h('pre', { tabindex: '0' }, body || '—'));
}

export function statusBadge(status) {
  const st = (status || '').toLowerCase();
  return h('span', { class: ['badge', `b-${st}`] }, status || '—');
}

/** The last segment of an ARN (after the last ':'). */
export function arnName(arn) {
  return String(arn || '').split(':').pop();
}

/** Rows that act like links: focusable, Enter or click goes to `href`. */
export function linkRow(tr, href) {
  tr.tabIndex = 0;
  tr.classList.add('clickable');
  tr.addEventListener('click', (e) => {
    if (e.target.closest('a,button,input,select')) return;
    location.hash = href;
  });
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target === tr) location.hash = href;
  });
  return tr;
}

/** Debounce `fn` by `ms`. */
export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** The text range of the JSON value (or member key) a JSON pointer names; best effort. */
export function pointerRange(text, pointer) {
  const segs = String(pointer || '').split('/').slice(1).map((x) => x.replace(/~1/g, '/').replace(/~0/g, '~'));
  let i = 0;
  const ws = () => { while (i < text.length && /\s/.test(text[i])) i++; };
  const str = () => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    try { return JSON.parse(text.slice(start, i)); } catch { return text.slice(start + 1, i - 1); }
  };
  const skip = () => {
    ws();
    if (text[i] === '"') return str();
    if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      while (i < text.length) {
        const c = text[i];
        if (c === '"') { str(); continue; }
        if (c === '{' || c === '[') depth++;
        if (c === '}' || c === ']') { depth--; if (depth === 0) { i++; return null; } }
        i++;
      }
      return null;
    }
    while (i < text.length && !/[,}\]\s]/.test(text[i])) i++;
    return null;
  };
  let best = { start: 0, end: 0 };
  ws();
  for (const seg of segs) {
    if (text[i] === '{') {
      i++;
      let found = false;
      for (;;) {
        ws();
        if (text[i] !== '"') break;
        const keyStart = i;
        const key = str();
        const keyEnd = i;
        ws();
        if (text[i] === ':') i++;
        ws();
        if (key === seg) {
          best = { start: keyStart, end: keyEnd };
          found = true;
          break;
        }
        skip();
        ws();
        if (text[i] === ',') i++;
        else break;
      }
      if (!found) return best;
    } else if (text[i] === '[') {
      i++;
      const want = Number(seg);
      let k = 0;
      let found = false;
      for (;;) {
        ws();
        if (text[i] === ']' || i >= text.length) break;
        if (k === want) {
          const start = i;
          skip();
          best = { start, end: i };
          i = start;
          found = true;
          break;
        }
        skip();
        ws();
        if (text[i] === ',') i++;
        else break;
        k++;
      }
      if (!found) return best;
    } else {
      return best;
    }
  }
  if (segs.length && best.end > best.start && text[best.start] === '"') {
    // Extend a member key to its value's end for a whole-member highlight.
    const save = i;
    ws();
    const vs = i;
    skip();
    if (i > vs) best = { start: best.start, end: i };
    i = save;
  }
  return best;
}

export function lineCol(text, offset) {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, col: offset - before.lastIndexOf('\n') };
}
