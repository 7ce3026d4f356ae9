// The Stepline console: hash routes, views, sign-in. Plain DOM, no framework.
//
//   #/                              state machines
//   #/create                        new state machine (paste ASL)
//   #/state-machines/<arn>          executions of a state machine (#…/definition, #…/edit)
//   #/executions/<arn>              one execution: graph, state details, events, timeline
//   #/activities                    activities

import * as api from './api.js';
import { GraphView } from './graph.js';
import { analyze, stateStatuses, eventSummary, detailsOf, stateIndex } from './history.js';
import { h, clear, fmtDate, fmtDuration, pretty, codeBlock, statusBadge, arnName, linkRow, debounce, pointerRange, lineCol } from './dom.js';

const main = document.getElementById('main');
const toasts = document.getElementById('toasts');
const who = document.getElementById('who');
let cleanup = [];
let sessionInfo = { authRequired: false, signedIn: true };

const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED', 'PENDING_REDRIVE'];
const STATUS_TEXT = { RUNNING: 'Running', SUCCEEDED: 'Succeeded', FAILED: 'Failed', TIMED_OUT: 'Timed out', ABORTED: 'Aborted', PENDING_REDRIVE: 'Pending redrive' };
const STATE_TEXT = { succeeded: 'Succeeded', failed: 'Failed', caught: 'Caught', retried: 'Retried', running: 'Running', aborted: 'Aborted', notreached: 'Not reached' };

// ---- routing -----------------------------------------------------------------------------------

export const enc = (arn) => encodeURIComponent(arn).replace(/%3A/gi, ':');
const smHref = (arn, tab) => `#/state-machines/${enc(arn)}${tab ? `/${tab}` : ''}`;
const exHref = (arn) => `#/executions/${enc(arn)}`;

function onCleanup(fn) {
  cleanup.push(fn);
}

function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      if ((await fn()) === false) return;
    } catch (e) {
      if (!stopped) toast(e.message, 'error');
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  onCleanup(() => { stopped = true; clearTimeout(timer); });
}

async function route() {
  cleanup.forEach((fn) => fn());
  cleanup = [];
  if (sessionInfo.authRequired && !sessionInfo.signedIn) return renderSignIn();
  const hash = location.hash.replace(/^#\/?/, '');
  const [head, ...rest] = hash.split('/');
  const tail = rest.join('/');
  document.querySelectorAll('.top nav a').forEach((a) => {
    a.classList.toggle('active', (a.dataset.nav === 'activities') === (head === 'activities'));
    if ((a.dataset.nav === 'activities') === (head === 'activities')) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  try {
    if (head === 'create') await renderEditor(null);
    else if (head === 'state-machines' && tail) {
      const m = tail.match(/^(.*?)(?:\/(definition|edit))?$/);
      const arn = decodeURIComponent(m[1]);
      if (m[2] === 'edit') await renderEditor(arn);
      else await renderStateMachine(arn, m[2] || 'executions');
    } else if (head === 'executions' && tail) await renderExecution(decodeURIComponent(tail));
    else if (head === 'activities') await renderActivities();
    else await renderStateMachines();
  } catch (e) {
    if (e.code === 'MissingAuthenticationToken' || e.status === 403 || e.status === 401) return;
    renderError(e);
  }
}

function page(title, ...content) {
  clear(main);
  document.title = `${title} · Stepline`;
  main.append(...content);
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    if (document.activeElement === document.body || !main.contains(document.activeElement)) heading.focus({ preventScroll: true });
  }
}

function renderError(e) {
  page('Error', h('h1', {}, 'Something went wrong'),
    h('div', { class: 'alert error', role: 'alert' }, h('strong', {}, e.code || 'Error'), ' ', e.message),
    h('p', {}, h('a', { href: '#/' }, 'Back to state machines')));
}

export function toast(message, kind = 'info') {
  const el = h('div', { class: ['toast', kind], role: kind === 'error' ? 'alert' : 'status' }, message);
  toasts.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 3000);
}

function confirmDialog(message, okText = 'OK') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'dialog', 'aria-label': 'Confirm' });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    dlg.append(h('form', { method: 'dialog', on: { submit: (e) => { e.preventDefault(); done(true); } } },
      h('p', {}, message),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', on: { click: () => done(false) } }, 'Cancel'),
        h('button', { type: 'submit', class: 'danger' }, okText))));
    dlg.addEventListener('cancel', () => resolve(false));
    document.body.append(dlg);
    dlg.showModal();
  });
}

// ---- sign-in -----------------------------------------------------------------------------------

function renderSignIn(message) {
  clear(who);
  const err = h('div', { class: 'alert error', role: 'alert', hidden: !message }, message || '');
  const id = h('input', { id: 'akid', name: 'username', autocomplete: 'username', required: true, spellcheck: 'false' });
  const secret = h('input', { id: 'secret', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'card signin', on: {
    submit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      try {
        sessionInfo = await api.signIn(id.value.trim(), secret.value);
        renderWho();
        route();
      } catch (ex) {
        err.hidden = false;
        err.textContent = ex.message || 'Sign-in failed.';
        secret.select();
      } finally {
        button.disabled = false;
      }
    },
  } },
  h('h1', {}, 'Sign in to Stepline'),
  h('p', { class: 'muted' }, 'This server requires an access key. Use one of the keys it was started with (--access-keys ID:SECRET).'),
  err,
  h('label', { for: 'akid' }, 'Access key ID'), id,
  h('label', { for: 'secret' }, 'Secret access key'), secret,
  h('div', { class: 'actions' }, button));
  page('Sign in', form);
  id.focus();
}

function renderWho() {
  clear(who);
  if (!sessionInfo.authRequired) {
    who.append(h('span', { class: 'muted small', title: 'The server runs without access keys' }, 'open API'));
    return;
  }
  if (!sessionInfo.signedIn) return;
  who.append(h('span', { class: 'small' }, sessionInfo.accessKeyId || ''),
    h('button', { type: 'button', class: 'link', on: { click: async () => {
      await api.signOut().catch(() => {});
      sessionInfo = { ...sessionInfo, signedIn: false };
      renderSignIn();
    } } }, 'Sign out'));
}

// ---- state machines ----------------------------------------------------------------------------

async function countExecutions(arn, status) {
  const { items, complete } = await api.listAll('ListExecutions', { stateMachineArn: arn, statusFilter: status, maxResults: 1000 }, 'executions', 5);
  return complete ? String(items.length) : `${items.length}+`;
}

async function renderStateMachines() {
  const { items } = await api.listAll('ListStateMachines', { maxResults: 1000 }, 'stateMachines');
  const search = h('input', { type: 'search', placeholder: 'Search by name', 'aria-label': 'Search state machines by name' });
  const tbody = h('tbody', {});
  const counts = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'];
  const rows = items.map((sm) => {
    const cells = Object.fromEntries(counts.map((st) => [st, h('td', { class: 'num', dataset: { status: st } }, '…')]));
    const tr = linkRow(h('tr', { dataset: { name: sm.name } },
      h('td', {}, h('a', { href: smHref(sm.stateMachineArn) }, sm.name)),
      h('td', {}, sm.type),
      h('td', { class: 'nowrap' }, fmtDate(sm.creationDate)),
      counts.map((st) => cells[st])), smHref(sm.stateMachineArn));
    tbody.append(tr);
    counts.forEach((st) => {
      countExecutions(sm.stateMachineArn, st).then((n) => {
        cells[st].textContent = n;
        cells[st].classList.toggle('zero', n === '0');
      }, () => { cells[st].textContent = '?'; });
    });
    return tr;
  });
  search.addEventListener('input', () => {
    const q = search.value.trim().toLowerCase();
    rows.forEach((tr) => { tr.hidden = q && !tr.dataset.name.toLowerCase().includes(q); });
  });
  page('State machines',
    h('div', { class: 'page-head' },
      h('h1', {}, 'State machines'),
      h('a', { class: 'button', href: '#/create' }, 'Create state machine')),
    items.length
      ? h('div', { class: 'card' },
        h('div', { class: 'toolbar' }, search, h('span', { class: 'muted small' }, `${items.length} state machine${items.length === 1 ? '' : 's'}`)),
        h('div', { class: 'table-wrap' }, h('table', { class: 'list', id: 'state-machines' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Type'), h('th', {}, 'Created'),
            counts.map((st) => h('th', { class: 'num' }, statusBadge(STATUS_TEXT[st]))))),
          tbody)))
      : h('div', { class: 'card empty' }, h('p', {}, 'No state machines yet.'), h('a', { class: 'button', href: '#/create' }, 'Create your first state machine')));
}

// ---- definition editor -------------------------------------------------------------------------

const TEMPLATE = `{
  "Comment": "A Hello World example",
  "StartAt": "Hello",
  "States": {
    "Hello": {
      "Type": "Pass",
      "Result": "Hello, World!",
      "Next": "Done"
    },
    "Done": {
      "Type": "Succeed"
    }
  }
}`;

async function renderEditor(arn) {
  const existing = arn ? await api.call('DescribeStateMachine', { stateMachineArn: arn }) : null;
  const name = h('input', { id: 'sm-name', required: true, pattern: '[A-Za-z0-9_\\-]{1,80}', value: existing ? existing.name : '', disabled: !!existing, autocomplete: 'off', spellcheck: 'false' });
  const type = h('select', { id: 'sm-type', disabled: !!existing },
    h('option', { value: 'STANDARD' }, 'Standard'), h('option', { value: 'EXPRESS' }, 'Express'));
  if (existing) type.value = existing.type;
  const text = h('textarea', { id: 'definition', class: 'code-input', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'diag-summary', rows: '24' });
  text.value = existing ? pretty(existing.definition) : TEMPLATE;
  const pos = h('span', { class: 'muted small', 'aria-live': 'off' }, 'Ln 1, Col 1');
  const diagSummary = h('div', { id: 'diag-summary', class: 'diag-summary', role: 'status' }, '');
  const diagList = h('ul', { class: 'diagnostics', id: 'diagnostics' });
  const preview = h('div', { class: 'graph', id: 'preview-graph' });
  const submitErr = h('div', { class: 'alert error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit' }, existing ? 'Save' : 'Create state machine');
  let lastPreview = null;

  const updatePos = () => {
    const { line, col } = lineCol(text.value, text.selectionStart);
    pos.textContent = `Ln ${line}, Col ${col}`;
  };
  const goTo = (range) => {
    text.focus();
    text.setSelectionRange(range.start, Math.max(range.end, range.start + 1));
    // Scroll the textarea so the selection is visible.
    const { line } = lineCol(text.value, range.start);
    const lh = parseFloat(getComputedStyle(text).lineHeight) || 18;
    text.scrollTop = Math.max(0, (line - 4) * lh);
    updatePos();
  };

  const validate = async () => {
    const body = text.value;
    let parsed = null;
    try { parsed = JSON.parse(body); } catch { parsed = null; }
    if (parsed && JSON.stringify(parsed) !== lastPreview) {
      lastPreview = JSON.stringify(parsed);
      try { new GraphView(preview, parsed); } catch (e) { clear(preview).append(h('p', { class: 'muted' }, `No preview: ${e.message}`)); }
    }
    let res;
    try {
      res = await api.call('ValidateStateMachineDefinition', { definition: body, type: type.value, severity: 'WARNING', maxResults: 100 });
    } catch (e) {
      diagSummary.textContent = `Could not validate: ${e.message}`;
      return null;
    }
    clear(diagList);
    const diags = res.diagnostics || [];
    const errors = diags.filter((d) => d.severity === 'ERROR').length;
    diagSummary.className = `diag-summary ${errors ? 'bad' : 'good'}`;
    diagSummary.textContent = errors ? `${errors} error${errors === 1 ? '' : 's'}${diags.length > errors ? `, ${diags.length - errors} warning(s)` : ''}` : diags.length ? `Valid, ${diags.length} warning(s)` : 'Valid definition';
    for (const d of diags) {
      const range = d.location ? pointerRange(body, d.location) : { start: 0, end: 0 };
      const { line, col } = lineCol(body, range.start);
      diagList.append(h('li', { class: ['diag', d.severity === 'ERROR' ? 'error' : 'warning'] },
        h('button', { type: 'button', class: 'link loc', title: 'Show in the editor', on: { click: () => goTo(range) } },
          h('code', {}, d.location || '/'), ` · line ${line}:${col}`),
        h('span', { class: 'code-name' }, d.code),
        h('span', { class: 'msg' }, d.message)));
    }
    return res;
  };
  const revalidate = debounce(validate, 350);
  text.addEventListener('input', () => { revalidate(); updatePos(); });
  text.addEventListener('keyup', updatePos);
  text.addEventListener('click', updatePos);
  text.addEventListener('keydown', (e) => {
    // Tab indents inside the editor; Escape then Tab leaves it (keyboard users are not trapped).
    if (e.key === 'Tab' && !e.shiftKey && !text.dataset.escaped) {
      e.preventDefault();
      const { selectionStart: a, selectionEnd: b } = text;
      text.setRangeText('  ', a, b, 'end');
      revalidate();
    } else if (e.key === 'Escape') {
      text.dataset.escaped = '1';
    } else {
      delete text.dataset.escaped;
    }
  });
  type.addEventListener('change', revalidate);

  const form = h('form', { class: 'editor', novalidate: true, on: {
    submit: async (e) => {
      e.preventDefault();
      submitErr.hidden = true;
      if (!existing && !/^[A-Za-z0-9_-]{1,80}$/.test(name.value)) {
        submitErr.hidden = false;
        submitErr.textContent = 'The name must be 1–80 letters, digits, hyphens or underscores.';
        name.focus();
        return;
      }
      submit.disabled = true;
      try {
        const res = await validate();
        if (res && res.result === 'FAIL') {
          submitErr.hidden = false;
          submitErr.textContent = 'Fix the errors listed below the editor first.';
          return;
        }
        let target = arn;
        if (existing) {
          await api.call('UpdateStateMachine', { stateMachineArn: arn, definition: text.value });
          toast('State machine updated');
        } else {
          const out = await api.call('CreateStateMachine', { name: name.value, definition: text.value, type: type.value });
          target = out.stateMachineArn;
          toast('State machine created');
        }
        location.hash = smHref(target);
      } catch (ex) {
        submitErr.hidden = false;
        submitErr.textContent = `${ex.code}: ${ex.message}`;
      } finally {
        submit.disabled = false;
      }
    },
  } },
  h('div', { class: 'card' },
    h('div', { class: 'fields' },
      h('div', {}, h('label', { for: 'sm-name' }, 'Name'), name),
      h('div', {}, h('label', { for: 'sm-type' }, 'Type'), type)),
    h('div', { class: 'split' },
      h('div', { class: 'editor-pane' },
        h('div', { class: 'pane-head' }, h('label', { for: 'definition' }, 'Definition (Amazon States Language JSON)'), pos),
        text,
        diagSummary,
        diagList),
      h('div', { class: 'preview-pane' }, h('div', { class: 'pane-head' }, h('span', {}, 'Preview')), preview)),
    submitErr,
    h('div', { class: 'actions' },
      h('a', { class: 'button secondary', href: existing ? smHref(arn) : '#/' }, 'Cancel'), submit)));
  page(existing ? `Edit ${existing.name}` : 'Create state machine',
    crumbs(existing ? [['State machines', '#/'], [existing.name, smHref(arn)], ['Edit']] : [['State machines', '#/'], ['Create']]),
    h('h1', {}, existing ? `Edit ${existing.name}` : 'Create state machine'), form);
  validate();
}

function crumbs(items) {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('ol', {},
    items.map(([label, href], i) => h('li', {}, href && i < items.length - 1 ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label)))));
}

// ---- one state machine ---------------------------------------------------------------------------

function startDialog(sm, initialInput) {
  const dlg = h('dialog', { class: 'dialog wide', 'aria-labelledby': 'start-title' });
  const name = h('input', { id: 'exec-name', placeholder: 'generated when empty', autocomplete: 'off', spellcheck: 'false' });
  const input = h('textarea', { id: 'exec-input', class: 'code-input', rows: '12', spellcheck: 'false', 'aria-describedby': 'input-status' });
  input.value = initialInput ?? sessionStorage.getItem(`input:${sm.stateMachineArn}`) ?? '{\n  \n}';
  const status = h('div', { id: 'input-status', class: 'small', role: 'status' });
  const err = h('div', { class: 'alert error', role: 'alert', hidden: true });
  const start = h('button', { type: 'submit', id: 'start-confirm' }, 'Start execution');
  const check = () => {
    try {
      JSON.parse(input.value);
      status.textContent = 'Valid JSON';
      status.className = 'small good';
      start.disabled = false;
      return true;
    } catch (e) {
      status.textContent = `Not valid JSON: ${e.message}`;
      status.className = 'small bad';
      start.disabled = true;
      return false;
    }
  };
  input.addEventListener('input', check);
  const close = () => { dlg.close(); dlg.remove(); };
  dlg.append(h('form', { method: 'dialog', on: {
    submit: async (e) => {
      e.preventDefault();
      if (!check()) return;
      start.disabled = true;
      err.hidden = true;
      try {
        sessionStorage.setItem(`input:${sm.stateMachineArn}`, input.value);
        const body = { stateMachineArn: sm.stateMachineArn, input: input.value };
        if (name.value.trim()) body.name = name.value.trim();
        const out = await api.call('StartExecution', body);
        close();
        location.hash = exHref(out.executionArn);
      } catch (ex) {
        err.hidden = false;
        err.textContent = `${ex.code}: ${ex.message}`;
        start.disabled = false;
      }
    },
  } },
  h('h2', { id: 'start-title' }, `Start execution of ${sm.name}`),
  h('label', { for: 'exec-name' }, 'Name (optional)'), name,
  h('label', { for: 'exec-input' }, 'Input (JSON)'), input, status, err,
  h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'secondary', on: { click: close } }, 'Cancel'), start)));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  check();
  input.focus();
}

async function renderStateMachine(arn, tab) {
  const sm = await api.call('DescribeStateMachine', { stateMachineArn: arn });
  let definition = {};
  try { definition = JSON.parse(sm.definition); } catch { definition = {}; }
  const tabs = h('div', { class: 'tabs', role: 'tablist' },
    [['executions', 'Executions'], ['definition', 'Definition']].map(([t, label]) =>
      h('a', { role: 'tab', href: smHref(arn, t === 'executions' ? '' : t), 'aria-selected': String(tab === t), class: tab === t ? 'active' : '' }, label)));
  const body = h('div', { class: 'tab-body' });
  page(sm.name,
    crumbs([['State machines', '#/'], [sm.name]]),
    h('div', { class: 'page-head' },
      h('h1', {}, sm.name, ' ', h('span', { class: 'badge b-type' }, sm.type)),
      h('div', { class: 'head-actions' },
        h('button', { type: 'button', id: 'start-execution', on: { click: () => startDialog(sm) } }, 'Start execution'),
        h('a', { class: 'button secondary', href: smHref(arn, 'edit') }, 'Edit'),
        h('button', { type: 'button', class: 'danger secondary', on: { click: async () => {
          if (!(await confirmDialog(`Delete the state machine ${sm.name}? Its executions stay readable until they expire.`, 'Delete'))) return;
          try {
            await api.call('DeleteStateMachine', { stateMachineArn: arn });
            toast('State machine deleted');
            location.hash = '#/';
          } catch (e) { toast(`${e.code}: ${e.message}`, 'error'); }
        } } }, 'Delete'))),
    h('dl', { class: 'meta' },
      h('dt', {}, 'ARN'), h('dd', {}, h('code', {}, sm.stateMachineArn)),
      h('dt', {}, 'Created'), h('dd', {}, fmtDate(sm.creationDate)),
      sm.description ? [h('dt', {}, 'Description'), h('dd', {}, sm.description)] : null,
      h('dt', {}, 'Revision'), h('dd', {}, h('code', {}, sm.revisionId || '—'))),
    tabs, body);
  if (tab === 'definition') {
    const graph = h('div', { class: 'graph tall', id: 'definition-graph' });
    body.append(h('div', { class: 'card' }, legend(false), graph), codeBlock(sm.definition, 'Definition'));
    new GraphView(graph, definition, { onSelect: () => {} });
    return;
  }
  await renderExecutionList(body, sm);
}

async function renderExecutionList(body, sm) {
  const filter = h('select', { id: 'status-filter', 'aria-label': 'Filter by status' },
    h('option', { value: '' }, 'All statuses'), STATUSES.map((st) => h('option', { value: st }, STATUS_TEXT[st])));
  const search = h('input', { type: 'search', id: 'exec-search', placeholder: 'Search by name', 'aria-label': 'Search executions by name' });
  const tbody = h('tbody', {});
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more');
  const count = h('span', { class: 'muted small' });
  let token = null;
  let items = [];
  const draw = () => {
    clear(tbody);
    const q = search.value.trim().toLowerCase();
    const shown = items.filter((e) => !q || e.name.toLowerCase().includes(q));
    for (const e of shown) {
      tbody.append(linkRow(h('tr', { dataset: { name: e.name, status: e.status } },
        h('td', {}, h('a', { href: exHref(e.executionArn) }, e.name)),
        h('td', {}, statusBadge(e.status)),
        h('td', { class: 'nowrap' }, fmtDate(e.startDate)),
        h('td', { class: 'nowrap' }, fmtDate(e.stopDate)),
        h('td', { class: 'nowrap' }, e.stopDate ? fmtDuration((e.stopDate - e.startDate) * 1000) : fmtDuration(Date.now() - e.startDate * 1000)),
        h('td', { class: 'num' }, e.redriveCount || '')), exHref(e.executionArn)));
    }
    if (!shown.length) tbody.append(h('tr', {}, h('td', { colspan: '6', class: 'muted empty-row' }, items.length ? 'No execution matches.' : 'No executions.')));
    count.textContent = `${shown.length} shown${token ? ' (more available)' : ''}`;
    more.hidden = !token;
  };
  const load = async (append) => {
    const req = { stateMachineArn: sm.stateMachineArn, maxResults: 100 };
    if (filter.value) req.statusFilter = filter.value;
    if (append && token) req.nextToken = token;
    const res = await api.call('ListExecutions', req);
    items = append ? items.concat(res.executions || []) : res.executions || [];
    token = res.nextToken || null;
    draw();
  };
  filter.addEventListener('change', () => load(false));
  search.addEventListener('input', draw);
  more.addEventListener('click', () => load(true));
  body.append(h('div', { class: 'card' },
    h('div', { class: 'toolbar' }, filter, search, count),
    h('div', { class: 'table-wrap' }, h('table', { class: 'list', id: 'executions' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', {}, 'Started'), h('th', {}, 'Ended'), h('th', {}, 'Duration'), h('th', { class: 'num' }, 'Redrives'))),
      tbody)),
    more));
  await load(false);
  // Refresh while something runs, unless the user paged further.
  every(3000, async () => {
    if (items.some((e) => e.status === 'RUNNING') && items.length <= 100) await load(false);
  });
}

// ---- one execution -----------------------------------------------------------------------------

function legend(withStatus = true) {
  const types = h('div', { class: 'legend', 'aria-label': 'Legend' },
    withStatus
      ? ['succeeded', 'retried', 'caught', 'failed', 'running', 'aborted', 'notreached'].map((st) => h('span', { class: ['key', `st-${st}`] }, h('i', {}), STATE_TEXT[st]))
      : [['task', 'Task'], ['choice', 'Choice'], ['pass', 'Pass'], ['wait', 'Wait'], ['succeed', 'Succeed'], ['fail', 'Fail'], ['parallel', 'Parallel / Map']].map(([t, label]) => h('span', { class: ['key', `t-${t}`] }, h('i', {}), label)),
    h('span', { class: 'key k-catch' }, h('i', {}), 'Catch'),
    h('span', { class: 'hint muted small' }, 'Drag to pan · wheel or +/− to zoom'));
  return types;
}

async function fetchHistory(arn) {
  const { items } = await api.listAll('GetExecutionHistory', { executionArn: arn, maxResults: 1000 }, 'events', 30);
  return items;
}

/** Events with an id above `lastId`, oldest first: reads newest-first pages until it reaches
 *  what it already has, so a live view costs one small request per poll, not the whole history. */
async function fetchNewer(arn, lastId) {
  const newer = [];
  let token;
  for (let i = 0; i < 30; i++) {
    const page = await api.call('GetExecutionHistory', {
      executionArn: arn, reverseOrder: true, maxResults: 100, ...(token ? { nextToken: token } : {}),
    });
    for (const ev of page.events || []) {
      if (ev.id <= lastId) return newer.reverse();
      newer.push(ev);
    }
    token = page.nextToken;
    if (!token) break;
  }
  return newer.reverse();
}

async function renderExecution(arn) {
  let ex = await api.call('DescribeExecution', { executionArn: arn });
  const smd = await api.call('DescribeStateMachineForExecution', { executionArn: arn }).catch(() => null);
  let definition = {};
  try { definition = JSON.parse(smd?.definition || '{}'); } catch { definition = {}; }
  const index = stateIndex(definition);
  let events = await fetchHistory(arn);
  let analysis = analyze(events, definition, ex.status);
  let selected = null;
  let iterFilter = null;

  const head = h('div', { class: 'page-head' });
  const meta = h('dl', { class: 'meta' });
  const banner = h('div', {});
  const graphEl = h('div', { class: 'graph tall', id: 'execution-graph' });
  const iterBanner = h('div', { class: 'iter-banner', hidden: true });
  const panel = h('aside', { class: 'card panel', id: 'state-panel', 'aria-live': 'polite', 'aria-label': 'Selected state' });
  const iterSection = h('section', { class: 'card', id: 'iterations', hidden: true });
  const tabBody = h('div', { class: 'tab-body' });
  let tab = 'events';
  const tabsEl = h('div', { class: 'tabs', role: 'tablist' });

  const graph = new GraphView(graphEl, definition, { onSelect: (name) => { selected = name; drawPanel(); graph.select(name); } });

  const drawHead = () => {
    clear(head).append(
      h('h1', {}, ex.name, ' ', h('span', { id: 'execution-status' }, statusBadge(ex.status))),
      h('div', { class: 'head-actions' },
        ex.status === 'RUNNING' ? h('button', { type: 'button', class: 'danger', id: 'stop-execution', on: { click: async () => {
          if (!(await confirmDialog(`Stop the execution ${ex.name}?`, 'Stop execution'))) return;
          try {
            await api.call('StopExecution', { executionArn: arn });
            toast('Execution stopped');
            await refresh();
          } catch (e) { toast(`${e.code}: ${e.message}`, 'error'); }
        } } }, 'Stop') : null,
        ['FAILED', 'TIMED_OUT', 'ABORTED'].includes(ex.status) ? h('button', { type: 'button', id: 'redrive-execution', on: { click: async () => {
          if (!(await confirmDialog(`Redrive ${ex.name}? It resumes from the states that did not succeed.`, 'Redrive'))) return;
          try {
            await api.call('RedriveExecution', { executionArn: arn });
            toast('Execution redriven');
            await refresh();
            poll();
          } catch (e) { toast(`${e.code}: ${e.message}`, 'error'); }
        } } }, 'Redrive') : null,
        h('button', { type: 'button', class: 'secondary', on: { click: () => startDialog({ stateMachineArn: ex.stateMachineArn, name: arnName(ex.stateMachineArn) }, pretty(ex.input)) } }, 'New execution')));
    clear(meta).append(...[
      h('dt', {}, 'Execution ARN'), h('dd', {}, h('code', {}, ex.executionArn)),
      h('dt', {}, 'State machine'), h('dd', {}, h('a', { href: smHref(ex.stateMachineArn) }, arnName(ex.stateMachineArn))),
      h('dt', {}, 'Started'), h('dd', {}, fmtDate(ex.startDate)),
      h('dt', {}, 'Ended'), h('dd', {}, fmtDate(ex.stopDate)),
      h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(((ex.stopDate ?? Date.now() / 1000) - ex.startDate) * 1000)),
      ex.redriveCount ? [h('dt', {}, 'Redrives'), h('dd', {}, String(ex.redriveCount))] : null].flat().filter(Boolean));
    clear(banner);
    if (ex.error || ex.cause) {
      banner.append(h('div', { class: 'alert error', role: 'alert', id: 'execution-error' },
        h('strong', {}, ex.error || 'Error'), h('div', { class: 'cause' }, ex.cause || '')));
    }
  };

  const drawGraphStatus = () => {
    graph.setStatuses(stateStatuses(analysis, iterFilter), analysis.taken);
    clear(iterBanner);
    iterBanner.hidden = !iterFilter;
    if (iterFilter) {
      iterBanner.append(h('span', {}, `Showing iteration ${iterFilter.index} of ${iterFilter.map} (${iterFilter.status})`),
        h('button', { type: 'button', class: 'link', on: { click: () => { iterFilter = null; drawGraphStatus(); drawPanel(); drawIterations(); } } }, 'Show all iterations'));
    }
  };

  const runBlock = (r) => h('div', { class: 'run' },
    h('div', { class: 'run-head' },
      statusBadge(STATE_TEXT[r.status]),
      r.iteration ? h('span', { class: 'chip' }, `${r.iteration.map} [${r.iteration.index}]`) : null,
      h('span', { class: 'muted small' }, `entered ${fmtDate(r.enteredAt)}`),
      h('span', { class: 'muted small' }, r.exitedAt ? fmtDuration((r.exitedAt - r.enteredAt) * 1000) : '')),
    h('div', { class: 'kv' }, h('span', {}, 'Attempts'), h('strong', { class: 'attempts' }, String(r.attempts))),
    r.failures.length ? h('div', { class: 'failures' }, r.failures.map((f, i) => h('div', { class: 'failure' },
      h('span', { class: 'muted small' }, `${f.type}${r.failures.length > 1 ? ` (${i + 1}/${r.failures.length})` : ''}`),
      h('div', {}, h('strong', { class: 'error-name' }, f.error || '(no error name)')),
      f.cause ? h('pre', { class: 'cause' }, pretty(f.cause)) : null))) : null,
    codeBlock(r.input, 'Input'),
    r.output !== undefined ? codeBlock(r.output, 'Output') : null);

  const drawPanel = () => {
    clear(panel);
    if (!selected) {
      panel.append(h('h2', {}, 'State details'), h('p', { class: 'muted' }, 'Select a state in the graph (click it, or Tab to it and press Enter) to see its input, output, error and attempts.'));
      return;
    }
    const info = stateStatuses(analysis, iterFilter).get(selected);
    const def = index.get(selected)?.def || {};
    panel.append(h('div', { class: 'panel-head' },
      h('h2', {}, selected),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Close state details', on: { click: () => { selected = null; graph.select(null); drawPanel(); } } }, '×')),
    h('div', { class: 'panel-meta' }, h('span', { class: 'chip' }, def.Type || '?'), statusBadge(STATE_TEXT[info ? info.status : 'notreached'])));
    if (!info) {
      panel.append(h('p', { class: 'muted', id: 'not-reached' }, 'This state was not reached.'));
    } else {
      const runs = info.runs.slice(-20);
      if (info.runs.length > 1) panel.append(h('p', { class: 'muted small' }, `${info.runs.length} runs${info.runs.length > 20 ? ' (last 20 shown)' : ''}`));
      runs.reverse().forEach((r) => panel.append(runBlock(r)));
    }
    panel.append(h('details', { class: 'def' }, h('summary', {}, 'State definition'), h('pre', {}, JSON.stringify(def, null, 2))));
  };

  const drawIterations = () => {
    clear(iterSection);
    const maps = [...analysis.iterations.entries()];
    iterSection.hidden = !maps.length;
    if (!maps.length) return;
    iterSection.append(h('h2', {}, 'Map iterations'));
    for (const [map, its] of maps) {
      const failed = its.filter((i) => i.status === 'failed').length;
      const q = h('select', { 'aria-label': `Filter iterations of ${map}` },
        h('option', { value: '' }, 'All'), ['running', 'succeeded', 'failed', 'aborted'].map((st) => h('option', { value: st }, STATE_TEXT[st])));
      const tbody = h('tbody', {});
      const fill = () => {
        clear(tbody);
        for (const it of its.filter((i) => !q.value || i.status === q.value).slice(0, 500)) {
          const tr = h('tr', { tabindex: '0', class: ['clickable', iterFilter === it && 'selected'], dataset: { index: String(it.index), status: it.status } },
            h('td', { class: 'num' }, String(it.index)),
            h('td', {}, statusBadge(STATE_TEXT[it.status])),
            h('td', {}, it.failedRun ? it.failedRun.name : ''),
            h('td', {}, it.error || ''),
            h('td', { class: 'cause-cell' }, it.cause || ''),
            h('td', { class: 'nowrap' }, it.endedAt ? fmtDuration((it.endedAt - it.startedAt) * 1000) : '…'));
          const show = () => {
            iterFilter = it;
            selected = it.failedRun ? it.failedRun.name : selected;
            drawGraphStatus();
            graph.select(selected);
            drawPanel();
            drawIterations();
            graphEl.scrollIntoView({ block: 'nearest' });
          };
          tr.addEventListener('click', show);
          tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') show(); });
          tbody.append(tr);
        }
      };
      q.addEventListener('change', fill);
      fill();
      iterSection.append(h('div', { class: 'iter-map' },
        h('div', { class: 'toolbar' }, h('h3', {}, map), h('span', { class: 'muted small' }, `${its.length} iteration${its.length === 1 ? '' : 's'}${failed ? `, ${failed} failed` : ''}`), q),
        h('div', { class: 'table-wrap' }, h('table', { class: 'list', dataset: { map } },
          h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Index'), h('th', {}, 'Status'), h('th', {}, 'Failed state'), h('th', {}, 'Error'), h('th', {}, 'Cause'), h('th', {}, 'Duration'))),
          tbody))));
    }
  };

  const drawTabs = () => {
    clear(tabsEl).append(...[['events', `Events (${events.length})`], ['timeline', 'Timeline'], ['io', 'Execution input & output']].map(([t, label]) =>
      h('button', { type: 'button', role: 'tab', id: `tab-${t}`, 'aria-selected': String(tab === t), class: tab === t ? 'active' : '', on: { click: () => { tab = t; drawTabs(); drawTab(); } } }, label)));
  };

  let eventFilter = '';
  const drawTab = () => {
    clear(tabBody);
    if (tab === 'events') tabBody.append(eventsTable());
    else if (tab === 'timeline') tabBody.append(timeline());
    else {
      tabBody.append(h('div', { class: 'io' }, codeBlock(ex.input, 'Input'),
        ex.output !== undefined ? codeBlock(ex.output, 'Output') : h('p', { class: 'muted' }, ex.status === 'RUNNING' ? 'No output yet.' : 'No output.')));
    }
  };

  const eventsTable = () => {
    const input = h('input', { type: 'search', placeholder: 'Filter by type, state or detail', 'aria-label': 'Filter events', value: eventFilter });
    const tbody = h('tbody', {});
    const t0 = events.length ? events[0].timestamp : 0;
    const fill = () => {
      clear(tbody);
      const q = eventFilter.toLowerCase();
      for (const ev of events) {
        const run = analysis.byEvent.get(ev.id);
        const d = detailsOf(ev);
        const stateName = run ? run.name : d?.name || d?.state || '';
        const summary = eventSummary(ev);
        if (q && !`${ev.id} ${ev.type} ${stateName} ${summary}`.toLowerCase().includes(q)) continue;
        const failure = /Failed|TimedOut|Aborted/.test(ev.type);
        const tr = h('tr', { tabindex: '0', class: ['clickable', failure && 'ev-failure'], 'aria-expanded': 'false', dataset: { id: String(ev.id), type: ev.type } },
          h('td', { class: 'num' }, String(ev.id)),
          h('td', {}, h('span', { class: 'ev-type' }, ev.type)),
          h('td', { class: 'nowrap' }, stateName + (run?.iteration ? ` [${run.iteration.index}]` : '')),
          h('td', { class: 'num nowrap' }, fmtDuration((ev.timestamp - t0) * 1000)),
          h('td', { class: 'nowrap muted' }, fmtDate(ev.timestamp)),
          h('td', { class: 'details-cell' }, summary));
        const toggle = () => {
          const open = tr.getAttribute('aria-expanded') === 'true';
          tr.setAttribute('aria-expanded', String(!open));
          if (open) tr.nextSibling?.classList.contains('ev-details') && tr.nextSibling.remove();
          else tr.after(h('tr', { class: 'ev-details' }, h('td', { colspan: '6' }, h('pre', {}, JSON.stringify(expandPayloads(ev), null, 2)))));
        };
        tr.addEventListener('click', toggle);
        tr.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } });
        tbody.append(tr);
      }
    };
    input.addEventListener('input', () => { eventFilter = input.value; fill(); });
    fill();
    return h('div', {},
      h('div', { class: 'toolbar' }, input, h('span', { class: 'muted small' }, 'Enter or click a row for its details')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'list events', id: 'history' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'ID'), h('th', {}, 'Type'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Elapsed'), h('th', {}, 'Timestamp'), h('th', {}, 'Details'))),
        tbody)));
  };

  const timeline = () => {
    const runs = analysis.runs.slice(0, 400);
    if (!runs.length) return h('p', { class: 'muted' }, 'No state has run yet.');
    const t0 = analysis.start;
    const t1 = Math.max(ex.stopDate ?? Date.now() / 1000, ...runs.map((r) => r.exitedAt ?? 0));
    const span = Math.max(t1 - t0, 0.001);
    const rows = runs.map((r) => {
      const end = r.exitedAt ?? (r.status === 'running' ? Date.now() / 1000 : analysis.end);
      const bar = h('div', { class: ['bar', `st-${r.status}`], title: `${r.name}: ${STATE_TEXT[r.status]}, ${fmtDuration((end - r.enteredAt) * 1000)}` });
      bar.style.left = `${((r.enteredAt - t0) / span) * 100}%`;
      bar.style.width = `max(3px, ${((end - r.enteredAt) / span) * 100}%)`;
      const row = h('div', { class: 'tl-row', tabindex: '0', role: 'button', 'aria-label': `${r.name} ${STATE_TEXT[r.status]}` },
        h('div', { class: 'tl-name' }, r.name, r.iteration ? h('span', { class: 'muted' }, ` [${r.iteration.index}]`) : null),
        h('div', { class: 'tl-track' }, bar),
        h('div', { class: 'tl-dur muted small' }, fmtDuration((end - r.enteredAt) * 1000)));
      const pick = () => { selected = r.name; graph.select(r.name); drawPanel(); panel.scrollIntoView({ block: 'nearest' }); };
      row.addEventListener('click', pick);
      row.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
      return row;
    });
    return h('div', { class: 'timeline', id: 'timeline' },
      h('div', { class: 'tl-axis muted small' }, h('span', {}, '0'), h('span', {}, fmtDuration(span * 1000))),
      rows,
      analysis.runs.length > runs.length ? h('p', { class: 'muted small' }, `First ${runs.length} of ${analysis.runs.length} state runs.`) : null);
  };

  page(ex.name,
    crumbs([['State machines', '#/'], [arnName(ex.stateMachineArn), smHref(ex.stateMachineArn)], [ex.name]]),
    head, meta, banner,
    h('div', { class: 'exec-grid' },
      h('section', { class: 'card graph-card', 'aria-label': 'Graph' }, legend(true), iterBanner, graphEl),
      panel),
    iterSection,
    h('section', { class: 'card' }, tabsEl, tabBody));

  drawHead();
  drawGraphStatus();
  drawPanel();
  drawIterations();
  drawTabs();
  drawTab();

  const refresh = async () => {
    const before = events.length;
    const beforeStatus = ex.status;
    ex = await api.call('DescribeExecution', { executionArn: arn });
    const lastId = events.length ? events[events.length - 1].id : 0;
    events = events.concat(await fetchNewer(arn, lastId));
    if (events.length === before && ex.status === beforeStatus) return ex.status;
    analysis = analyze(events, definition, ex.status);
    if (iterFilter) {
      const list = analysis.iterations.get(iterFilter.map) || [];
      iterFilter = list.find((i) => i.index === iterFilter.index) || null;
    }
    drawHead();
    drawGraphStatus();
    drawPanel();
    drawIterations();
    drawTabs();
    if (tab !== 'events' || !tabBody.contains(document.activeElement)) drawTab();
    return ex.status;
  };
  let polling = false;
  const poll = () => {
    if (polling) return;
    polling = true;
    every(1000, async () => {
      const st = await refresh();
      if (st !== 'RUNNING' && st !== 'PENDING_REDRIVE') {
        polling = false;
        return false;
      }
      return true;
    });
  };
  if (ex.status === 'RUNNING' || ex.status === 'PENDING_REDRIVE') poll();
}

/** An event with its JSON-text payloads (input, output, parameters) parsed, for display. */
function expandPayloads(ev) {
  const copy = JSON.parse(JSON.stringify(ev));
  const d = detailsOf(copy);
  if (d) {
    for (const k of ['input', 'output', 'parameters', 'cause']) {
      if (typeof d[k] === 'string') {
        try { d[k] = JSON.parse(d[k]); } catch { /* plain text */ }
      }
    }
  }
  return copy;
}

// ---- activities ----------------------------------------------------------------------------------

async function renderActivities() {
  const { items } = await api.listAll('ListActivities', { maxResults: 1000 }, 'activities');
  const name = h('input', { id: 'activity-name', placeholder: 'activity name', pattern: '[A-Za-z0-9_\\-]{1,80}', required: true, 'aria-label': 'New activity name' });
  page('Activities',
    h('div', { class: 'page-head' }, h('h1', {}, 'Activities')),
    h('div', { class: 'card' },
      h('form', { class: 'toolbar', on: { submit: async (e) => {
        e.preventDefault();
        try {
          await api.call('CreateActivity', { name: name.value.trim() });
          toast('Activity created');
          route();
        } catch (ex) { toast(`${ex.code}: ${ex.message}`, 'error'); }
      } } }, name, h('button', { type: 'submit' }, 'Create activity')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'ARN'), h('th', {}, 'Created'), h('th', {}, ''))),
        h('tbody', {}, items.length ? items.map((a) => h('tr', {},
          h('td', {}, a.name), h('td', {}, h('code', {}, a.activityArn)), h('td', { class: 'nowrap' }, fmtDate(a.creationDate)),
          h('td', {}, h('button', { type: 'button', class: 'link danger', on: { click: async () => {
            if (!(await confirmDialog(`Delete the activity ${a.name}?`, 'Delete'))) return;
            try { await api.call('DeleteActivity', { activityArn: a.activityArn }); route(); } catch (ex) { toast(`${ex.code}: ${ex.message}`, 'error'); }
          } } }, 'Delete')))) : h('tr', {}, h('td', { colspan: '4', class: 'muted empty-row' }, 'No activities.')))))));
}

// ---- start -------------------------------------------------------------------------------------

window.addEventListener('stepline:signed-out', () => {
  if (!sessionInfo.authRequired) return;
  const was = sessionInfo.signedIn;
  sessionInfo = { ...sessionInfo, signedIn: false };
  cleanup.forEach((fn) => fn());
  cleanup = [];
  renderSignIn(was ? 'Your session has ended; sign in again.' : undefined);
});
window.addEventListener('hashchange', route);

(async () => {
  try {
    sessionInfo = await api.session();
  } catch (e) {
    renderError(e);
    return;
  }
  renderWho();
  route();
})();
