// The state machine graph: ASL → nodes and edges (nested groups for Parallel branches and Map
// processors) → layered layout (layout.js) → SVG with pan and zoom.

import { layout } from './layout.js';
import { s, h, clear } from './dom.js';

const NAME_FONT = '600 13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const LABEL_FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const NODE_H = 46;
const GROUP_HEAD = 32;
const GROUP_PAD = 16;
const BRANCH_GAP = 28;
const MAX_LABEL = 34;

let canvas;
function measure(text, font) {
  if (typeof document === 'undefined') return text.length * (font === NAME_FONT ? 7.5 : 6);
  canvas = canvas || document.createElement('canvas');
  const ctx = canvas.getContext('2d');
  ctx.font = font;
  return ctx.measureText(text).width;
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// ---- Choice rules ----------------------------------------------------------------------------

const OPS = [
  ['GreaterThanEquals', '>='], ['LessThanEquals', '<='], ['GreaterThan', '>'], ['LessThan', '<'],
  ['Equals', '=='], ['Matches', 'matches'],
];

function stripJsonata(t) {
  return String(t).replace(/^\s*\{%\s*/, '').replace(/\s*%\}\s*$/, '');
}

/** One-line summary of a Choice rule: `$.x > 10`, `$.a == "b" and not ($.c is null)`. */
export function summarizeRule(rule) {
  if (!rule || typeof rule !== 'object') return '?';
  if (rule.Condition !== undefined) return stripJsonata(rule.Condition);
  const paren = (r) => {
    const t = summarizeRule(r);
    return (r.And || r.Or) ? `(${t})` : t;
  };
  if (Array.isArray(rule.And)) return rule.And.map(paren).join(' and ');
  if (Array.isArray(rule.Or)) return rule.Or.map(paren).join(' or ');
  if (rule.Not) return `not (${summarizeRule(rule.Not)})`;
  const v = rule.Variable ?? '$';
  for (const [k, val] of Object.entries(rule)) {
    if (k === 'Variable' || k === 'Next' || k === 'Comment' || k === 'Assign' || k === 'Output') continue;
    const isTest = k.match(/^Is(Null|Present|Numeric|String|Boolean|Timestamp)$/);
    if (isTest) {
      const what = { Null: 'null', Present: 'present', Numeric: 'a number', String: 'a string', Boolean: 'a boolean', Timestamp: 'a timestamp' }[isTest[1]];
      return `${v} is ${val ? '' : 'not '}${what}`;
    }
    const m = k.match(/^(String|Numeric|Boolean|Timestamp)(\w+?)(Path)?$/);
    if (!m) continue;
    const op = OPS.find(([suffix]) => m[2] === suffix);
    if (!op) continue;
    const rhs = m[3] ? String(val) : JSON.stringify(val);
    return `${v} ${op[1]} ${rhs}`;
  }
  return Object.keys(rule).filter((k) => k !== 'Next').join(' ');
}

// ---- Model -------------------------------------------------------------------------------------

let scopeSeq = 0;

function labelSize(text) {
  return { labelWidth: Math.ceil(measure(text, LABEL_FONT)) + 12, labelHeight: 18 };
}

function edge(list, from, to, kind, label, title) {
  const e = { id: `${from}\u2192${to}#${list.length}`, from, to, kind, label: label || null, title: title || label || '' };
  if (label) Object.assign(e, labelSize(label));
  list.push(e);
}

function typeLabel(st) {
  if (st.Type === 'Task') {
    const r = String(st.Resource || '');
    if (r.includes(':activity:')) return 'Task · activity';
    const m = r.match(/^arn:aws:states:::([\w-]+)(?::([\w.-]+))?/);
    if (m) return `Task · ${m[1]}${m[2] ? `:${m[2]}` : ''}`;
    if (r.includes(':lambda:')) return 'Task · lambda';
    return 'Task';
  }
  if (st.Type === 'Map' && st.ItemProcessor?.ProcessorConfig?.Mode === 'DISTRIBUTED') return 'Map · distributed';
  return st.Type || '?';
}

/** Builds the nested graph of a (sub-)machine `{StartAt, States}`. */
export function buildScope(machine) {
  const id = `s${scopeSeq++}`;
  const states = (machine && typeof machine.States === 'object' && machine.States) || {};
  const nodes = [];
  const edges = [];
  const startId = `${id}::start`;
  const endId = `${id}::end`;
  nodes.push({ id: startId, kind: 'start', name: 'Start', width: 64, height: 26 });
  let hasEnd = false;
  for (const [name, st] of Object.entries(states)) {
    if (!st || typeof st !== 'object') continue;
    const type = st.Type || '?';
    const node = { id: name, kind: 'state', name, type, state: st, sub: typeLabel(st) };
    const nameW = measure(truncate(name, 30), NAME_FONT);
    const subW = measure(node.sub, LABEL_FONT);
    node.width = Math.min(260, Math.max(124, Math.ceil(Math.max(nameW, subW)) + 36 + (type === 'Choice' ? 24 : 0)));
    node.height = NODE_H;
    if (type === 'Parallel' || type === 'Map') {
      const subs = type === 'Parallel' ? (Array.isArray(st.Branches) ? st.Branches : []) : [st.ItemProcessor || st.Iterator || {}];
      node.children = subs.map((m) => buildScope(m));
      const inner = node.children.reduce((a, c) => a + c.width, 0) + BRANCH_GAP * Math.max(0, node.children.length - 1);
      node.width = Math.max(node.width + 40, inner + 2 * GROUP_PAD);
      node.height = GROUP_HEAD + GROUP_PAD + Math.max(40, ...node.children.map((c) => c.height)) + GROUP_PAD;
    }
    nodes.push(node);
    if (type === 'Choice') {
      (Array.isArray(st.Choices) ? st.Choices : []).forEach((rule, i) => {
        const full = summarizeRule(rule);
        if (rule && typeof rule.Next === 'string') edge(edges, name, rule.Next, 'choice', truncate(full, MAX_LABEL), `Rule ${i + 1}: ${full}`);
      });
      if (typeof st.Default === 'string') edge(edges, name, st.Default, 'default', 'Default', 'Default');
    } else if (typeof st.Next === 'string') {
      edge(edges, name, st.Next, 'next');
    }
    if (st.End === true || type === 'Succeed' || type === 'Fail') {
      edge(edges, name, endId, 'end');
      hasEnd = true;
    }
    if (Array.isArray(st.Catch)) {
      for (const c of st.Catch) {
        if (!c || typeof c.Next !== 'string') continue;
        const errs = Array.isArray(c.ErrorEquals) ? c.ErrorEquals.join(', ') : '?';
        edge(edges, name, c.Next, 'catch', truncate(errs, MAX_LABEL), `Catch ${errs}`);
      }
    }
  }
  if (typeof machine?.StartAt === 'string') edge(edges, startId, machine.StartAt, 'start');
  if (hasEnd || !nodes.length) nodes.push({ id: endId, kind: 'end', name: 'End', width: 56, height: 26 });
  const known = new Set(nodes.map((n) => n.id));
  const usable = edges.filter((e) => known.has(e.to));
  const lay = layout({ nodes, edges: usable });
  return { id, nodes, edges: usable, layout: lay, width: lay.width, height: lay.height };
}

/** Every state name of a definition with the name of its nearest enclosing Map (or null). */
export function enclosingMaps(definition) {
  const out = new Map();
  const walk = (machine, map) => {
    for (const [name, st] of Object.entries(machine?.States || {})) {
      out.set(name, { map, type: st?.Type });
      if (st?.Type === 'Parallel') (st.Branches || []).forEach((b) => walk(b, map));
      if (st?.Type === 'Map') walk(st.ItemProcessor || st.Iterator, name);
    }
  };
  walk(definition, null);
  return out;
}

// ---- Rendering -------------------------------------------------------------------------------

function pathOf(points) {
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const my = (a.y + b.y) / 2;
    d += ` C${a.x},${my} ${b.x},${my} ${b.x},${b.y}`;
  }
  return d;
}

function retrySummary(st) {
  if (!Array.isArray(st.Retry) || !st.Retry.length) return null;
  const lines = st.Retry.map((r) => {
    const errs = Array.isArray(r.ErrorEquals) ? r.ErrorEquals.join(', ') : '?';
    const max = r.MaxAttempts ?? 3;
    const iv = r.IntervalSeconds ?? 1;
    const bo = r.BackoffRate ?? 2;
    return `${errs}: up to ${max}× every ${iv}s (×${bo})`;
  });
  const total = st.Retry.reduce((a, r) => a + (r.MaxAttempts ?? 3), 0);
  return { text: `↻ ${total}`, title: `Retry\n${lines.join('\n')}` };
}

function shapeFor(node) {
  const w = node.width;
  const hh = node.height;
  const x = -w / 2;
  const y = -hh / 2;
  switch (node.type) {
    case 'Choice': {
      const k = 14;
      return s('polygon', { class: 'shape', points: `${x + k},${y} ${x + w - k},${y} ${x + w},0 ${x + w - k},${-y} ${x + k},${-y} ${x},0` });
    }
    case 'Succeed':
    case 'Fail':
      return s('rect', { class: 'shape', x, y, width: w, height: hh, rx: hh / 2 });
    case 'Pass':
      return s('rect', { class: 'shape', x, y, width: w, height: hh, rx: 4 });
    case 'Wait':
      return s('rect', { class: 'shape', x, y, width: w, height: hh, rx: 14 });
    default:
      return s('rect', { class: 'shape', x, y, width: w, height: hh, rx: 8 });
  }
}

const ICONS = { Task: '⚙', Choice: '◇', Wait: '◷', Pass: '→', Succeed: '✓', Fail: '✕', Parallel: '∥', Map: '▦' };

/** The interactive graph of a definition. */
export class GraphView {
  constructor(container, definition, { onSelect } = {}) {
    this.container = clear(container);
    this.onSelect = onSelect || (() => {});
    this.root = buildScope(definition);
    this.nodeEls = new Map();
    this.edgeEls = [];
    this.uid = `g${Math.random().toString(36).slice(2, 8)}`;
    this.render();
  }

  render() {
    const pad = 24;
    const svg = s('svg', {
      class: 'graph-svg', role: 'group', 'aria-label': 'State machine graph. Tab moves between states; Enter selects; + and − zoom; arrow keys pan; 0 fits.',
      tabindex: '0', preserveAspectRatio: 'xMidYMid meet',
    });
    const defs = s('defs', {});
    for (const k of ['plain', 'catch', 'taken']) {
      defs.append(s('marker', {
        id: `${this.uid}-${k}`, viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse', class: `arrow arrow-${k}`,
      }, s('path', { d: 'M0,0 L10,5 L0,10 z' })));
    }
    svg.append(defs);
    this.viewport = s('g', { class: 'viewport' });
    this.viewport.append(this.renderScope(this.root, 0, 0));
    svg.append(this.viewport);
    this.bounds = { x: -pad, y: -pad, w: this.root.width + 2 * pad, h: this.root.height + 2 * pad };
    this.svg = svg;
    const toolbar = h('div', { class: 'graph-tools' },
      h('button', { type: 'button', class: 'icon', title: 'Zoom in (+)', 'aria-label': 'Zoom in', on: { click: () => this.zoom(1 / 1.25) } }, '+'),
      h('button', { type: 'button', class: 'icon', title: 'Zoom out (−)', 'aria-label': 'Zoom out', on: { click: () => this.zoom(1.25) } }, '−'),
      h('button', { type: 'button', class: 'icon wide', title: 'Fit to view (0)', 'aria-label': 'Fit to view', on: { click: () => this.fit() } }, 'Fit'));
    this.container.append(toolbar, svg);
    this.installPanZoom();
    requestAnimationFrame(() => this.initialView());
  }

  renderScope(scope, ox, oy) {
    const g = s('g', { class: 'scope', transform: `translate(${ox},${oy})` });
    const lay = scope.layout;
    const edgesG = s('g', { class: 'edges' });
    const labelsG = s('g', { class: 'labels' });
    for (const e of scope.edges) {
      const le = lay.edges[e.id];
      if (!le) continue;
      const marker = e.kind === 'catch' ? 'catch' : 'plain';
      const path = s('path', { class: ['edge', `e-${e.kind}`, le.reversed && 'e-back'], d: pathOf(le.points), 'marker-end': `url(#${this.uid}-${marker})` });
      const eg = s('g', { class: 'edge-g', dataset: { from: e.from, to: e.to, kind: e.kind } }, path);
      if (e.title) eg.append(s('title', { text: e.title }));
      edgesG.append(eg);
      let labelEl = null;
      if (e.label && le.label) {
        const w = e.labelWidth;
        labelEl = s('g', { class: ['elabel', `l-${e.kind}`], transform: `translate(${le.label.x},${le.label.y})` },
          s('title', { text: e.title }),
          s('rect', { x: -w / 2, y: -9, width: w, height: 18, rx: 9 }),
          s('text', { 'text-anchor': 'middle', dy: '0.35em' }, e.label));
        labelsG.append(labelEl);
      }
      this.edgeEls.push({ e, el: eg, path, labelEl });
    }
    g.append(edgesG);
    for (const node of scope.nodes) {
      const p = lay.nodes[node.id];
      if (!p) continue;
      g.append(this.renderNode(node, p));
    }
    g.append(labelsG);
    return g;
  }

  renderNode(node, p) {
    if (node.kind !== 'state') {
      return s('g', { class: ['marker-node', `m-${node.kind}`], transform: `translate(${p.x},${p.y})`, 'aria-hidden': 'true' },
        s('rect', { x: -node.width / 2, y: -node.height / 2, width: node.width, height: node.height, rx: node.height / 2 }),
        s('text', { 'text-anchor': 'middle', dy: '0.35em' }, node.name));
    }
    const type = node.type.toLowerCase();
    const g = s('g', {
      class: ['node', `t-${type}`, node.children && 'group'], transform: `translate(${p.x},${p.y})`,
      tabindex: '0', role: 'button', dataset: { state: node.name, type: node.type },
      'aria-label': `${node.name}, ${node.sub}`,
    });
    g.append(s('title', { text: `${node.name} (${node.sub})` }));
    if (node.children) {
      const w = node.width;
      const hh = node.height;
      g.append(s('rect', { class: 'shape group-shape', x: -w / 2, y: -hh / 2, width: w, height: hh, rx: 10 }));
      g.append(s('rect', { class: 'group-head', x: -w / 2, y: -hh / 2, width: w, height: GROUP_HEAD, rx: 10 }));
      g.append(s('text', { class: 'name', x: -w / 2 + 12, y: -hh / 2 + GROUP_HEAD / 2, dy: '0.35em' }, `${ICONS[node.type] || ''} ${truncate(node.name, 40)}`));
      g.append(s('text', { class: 'type', x: w / 2 - 12, y: -hh / 2 + GROUP_HEAD / 2, dy: '0.35em', 'text-anchor': 'end' },
        node.type === 'Map' ? `${node.sub} · item processor` : `Parallel · ${node.children.length} branches`));
      const inner = node.children.reduce((a, c) => a + c.width, 0) + BRANCH_GAP * (node.children.length - 1);
      let x = -inner / 2;
      const top = -hh / 2 + GROUP_HEAD + GROUP_PAD;
      node.children.forEach((c, i) => {
        if (i > 0) {
          const sx = x - BRANCH_GAP / 2;
          g.append(s('line', { class: 'branch-sep', x1: sx, x2: sx, y1: top - 6, y2: hh / 2 - 8 }));
        }
        const box = s('g', { class: 'branch' });
        box.append(this.renderScope(c, x, top));
        g.append(box);
        x += c.width + BRANCH_GAP;
      });
      this.badges(g, node, w / 2, -hh / 2);
    } else {
      g.append(shapeFor(node));
      g.append(s('text', { class: 'name', 'text-anchor': 'middle', y: -5 }, truncate(node.name, 30)));
      g.append(s('text', { class: 'type', 'text-anchor': 'middle', y: 12 }, `${ICONS[node.type] || ''} ${node.sub}`));
      this.badges(g, node, node.width / 2, -node.height / 2);
    }
    const activate = (e) => {
      e.stopPropagation();
      this.onSelect(node.name);
    };
    g.addEventListener('click', activate);
    g.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        activate(e);
      }
    });
    g.addEventListener('focus', () => this.reveal(node.name));
    this.nodeEls.set(node.name, { g, node });
    return g;
  }

  badges(g, node, right, top) {
    const r = retrySummary(node.state);
    if (r) {
      const w = measure(r.text, LABEL_FONT) + 12;
      g.append(s('g', { class: 'retry-badge', transform: `translate(${right - w - 6},${top - 9})` },
        s('title', { text: r.title }),
        s('rect', { width: w, height: 18, rx: 9 }),
        s('text', { x: w / 2, y: 9, dy: '0.35em', 'text-anchor': 'middle' }, r.text)));
    }
    const att = s('g', { class: 'attempts-badge', transform: `translate(${-right + 6},${top - 9})` },
      s('rect', { width: 44, height: 18, rx: 9 }),
      s('text', { x: 22, y: 9, dy: '0.35em', 'text-anchor': 'middle' }, ''));
    g.append(att);
  }

  /** statuses: Map name → {status, attempts}; taken: Set of "from→to" transitions. */
  setStatuses(statuses, taken = new Set()) {
    for (const [name, { g }] of this.nodeEls) {
      const info = statuses.get(name);
      const st = info ? info.status : 'notreached';
      g.classList.forEach((c) => { if (c.startsWith('st-')) g.classList.remove(c); });
      g.classList.add(`st-${st}`);
      g.dataset.status = st;
      const base = g.getAttribute('aria-label').replace(/ — .*$/, '');
      g.setAttribute('aria-label', `${base} — ${st.replace('notreached', 'not reached')}`);
      const att = g.querySelector(':scope > .attempts-badge');
      const n = info?.attempts || 0;
      att.classList.toggle('shown', n > 1);
      att.querySelector('text').textContent = `×${n}`;
      const t = att.querySelector('title') || att.appendChild(s('title', {}));
      t.textContent = `${n} attempts`;
    }
    for (const { e, el } of this.edgeEls) {
      let on = taken.has(`${e.from}\u2192${e.to}`);
      if (e.kind === 'start') on = statuses.has(e.to);
      if (e.kind === 'end') on = ['succeeded', 'retried', 'caught', 'failed'].includes(statuses.get(e.from)?.status);
      el.classList.toggle('taken', on);
      el.querySelector('path').setAttribute('marker-end', `url(#${this.uid}-${on ? 'taken' : e.kind === 'catch' ? 'catch' : 'plain'})`);
    }
  }

  select(name) {
    for (const [n, { g }] of this.nodeEls) g.classList.toggle('selected', n === name);
  }

  // ---- pan & zoom ----

  setView(v) {
    this.view = v;
    this.svg.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
  }

  size() {
    const r = this.svg.getBoundingClientRect();
    return { cw: Math.max(1, r.width), ch: Math.max(1, r.height) };
  }

  /** Fits the whole graph, but never below a readable scale: then shows the top. */
  initialView() {
    const { cw, ch } = this.size();
    const b = this.bounds;
    const scale = Math.min(cw / b.w, ch / b.h, 1.2);
    if (scale >= 0.75) return this.fit();
    const sc = 0.75;
    const w = cw / sc;
    const hh = ch / sc;
    this.setView({ x: b.x + b.w / 2 - w / 2, y: b.y, w, h: hh });
  }

  fit() {
    const { cw, ch } = this.size();
    const b = this.bounds;
    const scale = Math.min(cw / b.w, ch / b.h, 1.2);
    const w = cw / scale;
    const hh = ch / scale;
    this.setView({ x: b.x + (b.w - w) / 2, y: b.y + (b.h - hh) / 2, w, h: hh });
  }

  zoom(factor, cx, cy) {
    const v = this.view;
    if (!v) return;
    const { cw } = this.size();
    const scale = cw / (v.w * factor);
    if (scale < 0.08 || scale > 4) return;
    const px = cx ?? v.x + v.w / 2;
    const py = cy ?? v.y + v.h / 2;
    this.setView({ x: px - (px - v.x) * factor, y: py - (py - v.y) * factor, w: v.w * factor, h: v.h * factor });
  }

  pan(dx, dy) {
    const v = this.view;
    this.setView({ ...v, x: v.x + dx, y: v.y + dy });
  }

  /** Pans so the node named `name` is in view. */
  reveal(name) {
    const entry = this.nodeEls.get(name);
    if (!entry || !this.view) return;
    const box = entry.g.getBBox();
    const m = entry.g.getCTM();
    const vm = this.viewport.getCTM();
    if (!m || !vm) return;
    const inv = vm.inverse().multiply(m);
    const x = inv.e + box.x;
    const y = inv.f + box.y;
    const v = this.view;
    let nx = v.x;
    let ny = v.y;
    if (x < v.x) nx = x - 20;
    else if (x + box.width > v.x + v.w) nx = x + box.width - v.w + 20;
    if (y < v.y) ny = y - 20;
    else if (y + box.height > v.y + v.h) ny = y + box.height - v.h + 20;
    if (nx !== v.x || ny !== v.y) this.setView({ ...v, x: nx, y: ny });
  }

  toSvg(clientX, clientY) {
    const r = this.svg.getBoundingClientRect();
    const v = this.view;
    // preserveAspectRatio meet: the viewBox is scaled uniformly and centred.
    const scale = Math.min(r.width / v.w, r.height / v.h);
    const offX = (r.width - v.w * scale) / 2;
    const offY = (r.height - v.h * scale) / 2;
    return { x: v.x + (clientX - r.left - offX) / scale, y: v.y + (clientY - r.top - offY) / scale, scale };
  }

  installPanZoom() {
    const svg = this.svg;
    svg.addEventListener('wheel', (e) => {
      if (!this.view) return;
      e.preventDefault();
      const p = this.toSvg(e.clientX, e.clientY);
      // deltaMode 1 (Firefox with a mouse wheel) counts lines, not pixels.
      const dy = e.deltaY * (e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 400 : 1);
      this.zoom(Math.exp(Math.sign(dy) * Math.min(Math.abs(dy), 100) * 0.0025), p.x, p.y);
    }, { passive: false });
    let drag = null;
    svg.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || e.target.closest('.node:not(.group)') || !this.view) return;
      drag = { x: e.clientX, y: e.clientY, view: { ...this.view }, moved: false };
    });
    svg.addEventListener('pointermove', (e) => {
      if (!drag) return;
      const { scale } = this.toSvg(e.clientX, e.clientY);
      const dx = (e.clientX - drag.x) / scale;
      const dy = (e.clientY - drag.y) / scale;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) > 3) {
        // Capture only once it is a drag, so a click on a group still reaches the group.
        drag.moved = true;
        svg.setPointerCapture(e.pointerId);
      }
      if (drag.moved) {
        svg.classList.add('panning');
        this.setView({ ...drag.view, x: drag.view.x - dx, y: drag.view.y - dy });
      }
    });
    const end = (e) => {
      if (!drag) return;
      if (drag.moved) {
        // Swallow the click that ends a drag.
        const stop = (ev) => { ev.stopPropagation(); };
        svg.addEventListener('click', stop, { capture: true, once: true });
        setTimeout(() => svg.removeEventListener('click', stop, { capture: true }), 0);
      }
      drag = null;
      svg.classList.remove('panning');
      if (svg.hasPointerCapture(e.pointerId)) svg.releasePointerCapture(e.pointerId);
    };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
    svg.addEventListener('keydown', (e) => {
      if (!this.view) return;
      const step = this.view.w * 0.1;
      const keys = {
        '+': () => this.zoom(1 / 1.25), '=': () => this.zoom(1 / 1.25), '-': () => this.zoom(1.25), '0': () => this.fit(),
        ArrowLeft: () => this.pan(-step, 0), ArrowRight: () => this.pan(step, 0), ArrowUp: () => this.pan(0, -step), ArrowDown: () => this.pan(0, step),
      };
      if (keys[e.key] && (e.target === svg || !e.key.startsWith('Arrow'))) {
        e.preventDefault();
        keys[e.key]();
      }
    });
    if (typeof ResizeObserver !== 'undefined') {
      let last = null;
      new ResizeObserver(() => {
        const { cw, ch } = this.size();
        if (last && this.view) {
          // Keep the scale, grow or shrink the visible area.
          const sc = Math.min(last.cw / this.view.w, last.ch / this.view.h);
          this.setView({ ...this.view, w: cw / sc, h: ch / sc });
        }
        last = { cw, ch };
      }).observe(svg);
    }
  }
}
