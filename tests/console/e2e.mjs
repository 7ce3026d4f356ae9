// End-to-end test of the Stepline web console in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core, which never downloads a browser).
//
// Environment:
//   STEPLINE_ENDPOINT       the server (default http://127.0.0.1:8080), started with access keys
//   STEPLINE_ACCESS_KEY_ID  / STEPLINE_SECRET_ACCESS_KEY   one of its keys
//   SCREENSHOT_DIR          where screenshots go (default ./screenshots)
//   CHROMIUM_PATH           the browser (default /usr/bin/chromium)
//
// It signs in, creates an activity and a state machine through the UI (pasting ASL, seeing a
// diagnostic first), starts executions from the UI, plays the activity worker itself
// (GetActivityTask / SendTask* with the console's session cookie), and checks the execution
// view: node colours, attempts, Choice/Catch edges, the state panel, Map iterations, the event
// history and timeline, keyboard use, pan and zoom; no console errors; screenshots at laptop
// and phone widths. Ends with one line "console e2e: N passed, 0 failed".

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const endpoint = (process.env.STEPLINE_ENDPOINT || 'http://127.0.0.1:8080').replace(/\/$/, '');
const keyId = process.env.STEPLINE_ACCESS_KEY_ID || process.env.AWS_ACCESS_KEY_ID;
const secret = process.env.STEPLINE_SECRET_ACCESS_KEY || process.env.AWS_SECRET_ACCESS_KEY;
const shots = process.env.SCREENSHOT_DIR || 'screenshots';
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
assert.ok(keyId && secret, 'set STEPLINE_ACCESS_KEY_ID and STEPLINE_SECRET_ACCESS_KEY');
mkdirSync(shots, { recursive: true });

const suffix = Date.now().toString(36);
const activityName = `console-charge-${suffix}`;
const machineName = `console-e2e-${suffix}`;
let passed = 0;
const problems = [];

async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

function definition(activityArn) {
  return {
    Comment: 'Console end-to-end',
    StartAt: 'Prepare',
    States: {
      Prepare: { Type: 'Pass', Parameters: { 'amount.$': '$.amount', 'items.$': '$.items', 'fail.$': '$.fail' }, Next: 'Route' },
      Route: {
        Type: 'Choice',
        Choices: [{ Variable: '$.amount', NumericGreaterThan: 100, Next: 'Charge' }],
        Default: 'Skip',
      },
      Skip: { Type: 'Succeed' },
      Charge: {
        Type: 'Task',
        Resource: activityArn,
        TimeoutSeconds: 120,
        Retry: [{ ErrorEquals: ['Gateway.Busy'], IntervalSeconds: 1, MaxAttempts: 2, BackoffRate: 1 }],
        Catch: [{ ErrorEquals: ['Card.Declined'], ResultPath: '$.declined', Next: 'Done' }],
        ResultPath: '$.charge',
        Next: 'Fanout',
      },
      Fanout: {
        Type: 'Parallel',
        Branches: [
          { StartAt: 'Notify', States: { Notify: { Type: 'Pass', Result: 'sent', End: true } } },
          {
            StartAt: 'Items',
            States: {
              Items: {
                Type: 'Map',
                ItemsPath: '$.items',
                ItemProcessor: {
                  ProcessorConfig: { Mode: 'INLINE' },
                  StartAt: 'Check',
                  States: {
                    Check: { Type: 'Choice', Choices: [{ Variable: '$', NumericGreaterThan: 2, Next: 'Reject' }], Default: 'Accept' },
                    Reject: { Type: 'Fail', Error: 'Item.TooBig', Cause: 'items above 2 are refused' },
                    Accept: { Type: 'Pass', End: true },
                  },
                },
                Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.mapError', Next: 'Recover' }],
                End: true,
              },
              Recover: { Type: 'Pass', End: true },
            },
          },
        ],
        ResultPath: '$.fanout',
        Next: 'Done',
      },
      Done: { Type: 'Succeed' },
    },
  };
}

/** A 40-state machine, to look at the layout of a big graph. */
function bigDefinition() {
  const states = {};
  const n = 36;
  for (let i = 0; i < n; i++) {
    const name = `Step${String(i).padStart(2, '0')}`;
    const next = i + 1 < n ? `Step${String(i + 1).padStart(2, '0')}` : 'Finish';
    if (i % 6 === 2) {
      states[name] = {
        Type: 'Choice',
        Choices: [
          { Variable: '$.kind', StringEquals: `k${i}`, Next: next },
          { And: [{ Variable: '$.n', NumericGreaterThanEquals: i }, { Variable: '$.flag', BooleanEquals: true }], Next: `Step${String(Math.min(i + 3, n - 1)).padStart(2, '0')}` },
        ],
        Default: i > 6 ? `Step${String(i - 4).padStart(2, '0')}` : 'Failure',
      };
    } else if (i % 6 === 4) {
      states[name] = { Type: 'Wait', Seconds: 1, Next: next };
    } else {
      states[name] = {
        Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Next: next,
        ...(i % 5 === 0 ? { Retry: [{ ErrorEquals: ['States.Timeout'], MaxAttempts: 3 }], Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Failure' }] } : {}),
      };
    }
  }
  states.Finish = { Type: 'Succeed' };
  states.Failure = { Type: 'Fail', Error: 'Big.Failed' };
  return { StartAt: 'Step00', States: states };
}

let cookie = null;
/** The API from Node, authorized by the console's session cookie. */
async function api(action, body, { header = true } = {}) {
  const res = await fetch(`${endpoint}/`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.0',
      'X-Amz-Target': `AWSStepFunctions.${action}`,
      Cookie: cookie,
      ...(header ? { 'X-Stepline-Console': '1' } : {}),
    },
    body: JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) {
    const err = new Error(`${action}: ${res.status} ${data.__type}: ${data.message}`);
    err.status = res.status;
    err.code = data.__type;
    throw err;
  }
  return data;
}

async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (msg) => {
  if (msg.type() === 'error' || msg.type() === 'warning') consoleErrors.push(`${msg.type()}: ${msg.text()}`);
});
page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
const status = (name) => page.locator(`#execution-graph g.node[data-state="${name}"]`).getAttribute('data-status');

try {
  await step('GET / serves the console with a CSP and the API stays on POST /', async () => {
    const res = await fetch(`${endpoint}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(res.headers.get('content-security-policy'), /default-src 'self'/);
    const js = await fetch(`${endpoint}/console/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /javascript/);
    if (js.headers.get('etag')) {
      // (Assets served from disk with STEPLINE_CONSOLE_DIR have no ETag.)
      const again = await fetch(`${endpoint}/console/app.js`, { headers: { 'If-None-Match': js.headers.get('etag') } });
      assert.equal(again.status, 304);
    }
    const unsigned = await fetch(`${endpoint}/`, { method: 'POST', headers: { 'X-Amz-Target': 'AWSStepFunctions.ListStateMachines' }, body: '{}' });
    assert.equal(unsigned.status, 403, 'the API refuses unsigned requests');
  });

  await step('sign in (a wrong secret is refused)', async () => {
    await page.goto(endpoint);
    await page.waitForSelector('form.signin');
    await page.fill('#akid', keyId);
    await page.fill('#secret', 'not-the-secret');
    await page.click('form.signin button[type=submit]');
    await page.waitForSelector('form.signin .alert.error:not([hidden])');
    await page.fill('#secret', secret);
    await page.click('form.signin button[type=submit]');
    await page.waitForSelector('h1:text("State machines")');
    const c = (await context.cookies()).find((x) => x.name === 'stepline_session');
    assert.ok(c, 'the session cookie is set');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    cookie = `stepline_session=${c.value}`;
    await assert.rejects(api('ListStateMachines', {}, { header: false }), (e) => e.status === 403, 'the cookie alone does not authorize');
    await api('ListStateMachines', {});
  });

  let activityArn;
  await step('create an activity in the UI', async () => {
    await page.click('nav a[data-nav=activities]');
    await page.fill('#activity-name', activityName);
    await page.click('form.toolbar button[type=submit]');
    const cell = page.locator(`td:text-is("${activityName}") + td code`);
    await cell.waitFor();
    activityArn = await cell.textContent();
    assert.match(activityArn, /:activity:console-charge-/);
  });

  let machineArn;
  await step('create a state machine by pasting ASL; diagnostics show their location', async () => {
    await page.goto(`${endpoint}/#/create`);
    await page.waitForSelector('#definition');
    await page.fill('#sm-name', machineName);
    const bad = definition(activityArn);
    bad.States.Route.Default = 'Nowhere';
    await page.fill('#definition', JSON.stringify(bad, null, 2));
    const diag = page.locator('#diagnostics li.diag.error').first();
    await diag.waitFor();
    assert.match(await diag.textContent(), /\/States\/Route/);
    await page.screenshot({ path: join(shots, 'editor-diagnostics.png'), fullPage: true });
    await diag.locator('button.loc').click();
    const selected = await page.$eval('#definition', (t) => t.value.slice(t.selectionStart, t.selectionEnd));
    assert.match(selected, /Default|Nowhere|Route/, `the diagnostic selects its location (got ${JSON.stringify(selected)})`);
    await page.fill('#definition', JSON.stringify(definition(activityArn), null, 2));
    await page.waitForSelector('#diag-summary.good');
    await page.waitForSelector('#preview-graph g.node[data-state="Reject"]');
    await page.click('form.editor button[type=submit]');
    await page.waitForSelector(`h1:has-text("${machineName}")`);
    machineArn = decodeURIComponent(new URL(page.url()).hash.replace('#/state-machines/', ''));
    assert.match(machineArn, /:stateMachine:console-e2e-/);
  });

  await step('the definition graph: every state, Choice rule and Default labels, dashed Catch edges, nested groups', async () => {
    await page.click('a[role=tab]:has-text("Definition")');
    const g = '#definition-graph';
    await page.waitForSelector(`${g} g.node`);
    for (const s of ['Prepare', 'Route', 'Skip', 'Charge', 'Fanout', 'Notify', 'Items', 'Check', 'Reject', 'Accept', 'Recover', 'Done']) {
      assert.equal(await page.locator(`${g} g.node[data-state="${s}"]`).count(), 1, s);
    }
    const labels = await page.locator(`${g} .elabel text`).allTextContents();
    assert.ok(labels.includes('$.amount > 100'), `choice rule label: ${labels}`);
    assert.ok(labels.includes('Default'), 'Default label');
    assert.ok(labels.includes('Card.Declined'), 'catch label');
    assert.ok(await page.locator(`${g} path.e-catch`).count() >= 2, 'catch edges');
    assert.equal(await page.locator(`${g} g.node.group[data-state="Fanout"] g.node[data-state="Items"] g.node[data-state="Check"]`).count(), 1, 'Map nested in Parallel');
    assert.equal(await page.locator(`${g} g.node[data-state="Charge"] .retry-badge`).count(), 1, 'retry badge');
    assert.ok(await page.locator(`${g} .m-start`).count() >= 3 && await page.locator(`${g} .m-end`).count() >= 3, 'start/end markers');
    const before = await page.getAttribute(`${g} svg`, 'viewBox');
    const box = await page.locator(`${g} svg`).boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, -300);
    await waitFor('zoom', async () => (await page.getAttribute(`${g} svg`, 'viewBox')) !== before);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 80, box.y + box.height / 2 + 40, { steps: 4 });
    await page.mouse.up();
    await page.click(`${g} button:has-text("Fit")`);
    await page.screenshot({ path: join(shots, 'definition.png'), fullPage: true });
  });

  let execArn;
  await step('start an execution from the UI (the input editor validates JSON)', async () => {
    await page.click('a[role=tab]:has-text("Executions")');
    await page.click('#start-execution');
    await page.fill('#exec-name', `run-${suffix}`);
    await page.fill('#exec-input', '{"amount": 250, "items": [1, 2, 3');
    await page.waitForSelector('#input-status.bad');
    assert.equal(await page.isDisabled('#start-confirm'), true);
    await page.fill('#exec-input', JSON.stringify({ amount: 250, items: [1, 2, 3], fail: false }, null, 2));
    await page.waitForSelector('#input-status.good');
    await page.click('#start-confirm');
    await page.waitForSelector('#execution-graph g.node');
    execArn = decodeURIComponent(new URL(page.url()).hash.replace('#/executions/', ''));
    assert.match(execArn, new RegExp(`:execution:${machineName}:run-${suffix}$`));
  });

  await step('live: the Task waiting for its worker shows as running', async () => {
    await waitFor('Charge running', async () => (await status('Charge')) === 'running');
    assert.equal(await status('Prepare'), 'succeeded');
    assert.equal(await status('Done'), 'notreached');
    assert.match(await page.textContent('#execution-status'), /RUNNING/);
    await page.screenshot({ path: join(shots, 'execution-running.png') });
  });

  await step('the worker fails once (retried), then succeeds; the page follows by polling', async () => {
    const t1 = await api('GetActivityTask', { activityArn, workerName: 'e2e-worker' });
    assert.ok(t1.taskToken, 'a task');
    await api('SendTaskFailure', { taskToken: t1.taskToken, error: 'Gateway.Busy', cause: 'try again later' });
    const t2 = await api('GetActivityTask', { activityArn, workerName: 'e2e-worker' });
    assert.ok(t2.taskToken, 'the retry');
    await api('SendTaskSuccess', { taskToken: t2.taskToken, output: JSON.stringify({ chargeId: 'ch-42' }) });
    await waitFor('SUCCEEDED', async () => /SUCCEEDED/.test(await page.textContent('#execution-status')), 30000);
  });

  await step('final colours: succeeded, retried, caught, failed, not reached', async () => {
    const expected = {
      Prepare: 'succeeded', Route: 'succeeded', Skip: 'notreached', Charge: 'retried', Fanout: 'succeeded',
      Notify: 'succeeded', Items: 'caught', Check: 'succeeded', Reject: 'failed', Accept: 'succeeded',
      Recover: 'succeeded', Done: 'succeeded',
    };
    for (const [s, st] of Object.entries(expected)) assert.equal(await status(s), st, s);
    const fill = await page.$eval('#execution-graph g.node[data-state="Reject"] > .shape', (el) => getComputedStyle(el).fill);
    const okFill = await page.$eval('#execution-graph g.node[data-state="Done"] > .shape', (el) => getComputedStyle(el).fill);
    assert.notEqual(fill, okFill, 'failed and succeeded states are coloured differently');
    assert.equal(await page.textContent('#execution-graph g.node[data-state="Charge"] .attempts-badge.shown text'), '×2');
    assert.ok(await page.locator('#execution-graph .edge-g.taken').count() >= 8, 'taken edges highlighted');
    await page.screenshot({ path: join(shots, 'execution-laptop.png'), fullPage: true });
  });

  await step('click a state: its input, output, error and attempts', async () => {
    await page.click('#execution-graph g.node[data-state="Charge"]');
    const panel = page.locator('#state-panel');
    await panel.locator('h2:text-is("Charge")').waitFor();
    const text = await panel.textContent();
    assert.match(text, /Retried/);
    assert.match(text, /Gateway\.Busy/);
    assert.match(text, /try again later/);
    assert.equal(await panel.locator('.attempts').first().textContent(), '2');
    await page.screenshot({ path: join(shots, 'execution-state-panel.png') });
    assert.match(await panel.locator('.code:has-text("Input") pre').first().textContent(), /"amount": 250/);
    assert.match(await panel.locator('.code:has-text("Output") pre').first().textContent(), /"chargeId": "ch-42"/);
    await page.click('#execution-graph g.node[data-state="Skip"]');
    await panel.locator('#not-reached').waitFor();
    await page.click('#execution-graph g.node[data-state="Items"] > .group-head');
    await panel.locator('h2:text-is("Items")').waitFor();
    assert.match(await panel.textContent(), /Caught[\s\S]*Item\.TooBig/);
  });

  await step('keyboard: Tab to a state and press Enter', async () => {
    await page.focus('#execution-graph g.node[data-state="Route"]');
    await page.keyboard.press('Enter');
    await page.locator('#state-panel h2:text-is("Route")').waitFor();
    const outline = await page.$eval('#execution-graph g.node[data-state="Route"] > .shape', (el) => getComputedStyle(el).stroke);
    assert.ok(outline, 'focus style');
  });

  await step('Map iterations: which item failed and why', async () => {
    const rows = page.locator('#iterations table[data-map="Items"] tbody tr');
    assert.equal(await rows.count(), 3);
    const failed = page.locator('#iterations tr[data-index="2"]');
    assert.equal(await failed.getAttribute('data-status'), 'failed');
    const text = await failed.textContent();
    assert.match(text, /Reject/);
    assert.match(text, /Item\.TooBig/);
    assert.match(text, /items above 2 are refused/);
    assert.equal(await page.getAttribute('#iterations tr[data-index="0"]', 'data-status'), 'succeeded');
    await failed.focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('.iter-banner:not([hidden])');
    assert.equal(await status('Reject'), 'failed');
    assert.equal(await status('Accept'), 'notreached', 'iteration 2 never reached Accept');
    await page.locator('#state-panel h2:text-is("Reject")').waitFor();
    assert.match(await page.textContent('#state-panel'), /Item\.TooBig/);
    await page.click('.iter-banner button');
    assert.equal(await status('Accept'), 'succeeded');
  });

  await step('the event history table and the timeline', async () => {
    const rows = page.locator('#history tbody tr');
    assert.ok((await rows.count()) > 25, 'events listed');
    const types = await page.locator('#history tbody tr td:nth-child(2)').allTextContents();
    for (const t of ['ExecutionStarted', 'ActivityScheduled', 'ActivityFailed', 'ActivitySucceeded', 'MapIterationFailed', 'ExecutionSucceeded']) {
      assert.ok(types.includes(t), t);
    }
    const failedRow = page.locator('#history tbody tr[data-type="ActivityFailed"]');
    assert.match(await failedRow.textContent(), /Charge/);
    assert.match(await failedRow.textContent(), /Gateway\.Busy/);
    await failedRow.click();
    await page.waitForSelector('#history tr.ev-details pre');
    assert.match(await page.textContent('#history tr.ev-details pre'), /activityFailedEventDetails/);
    await page.click('#tab-timeline');
    assert.ok((await page.locator('#timeline .tl-row').count()) >= 12, 'timeline rows');
    assert.ok((await page.locator('#timeline .bar.st-failed').count()) >= 1, 'a failed bar');
    await page.click('#tab-events');
  });

  await step('a failing execution: failed state, error banner, Redrive offered', async () => {
    await page.goto(`${endpoint}/#/state-machines/${machineArn}`);
    await page.click('#start-execution');
    await page.fill('#exec-input', JSON.stringify({ amount: 900, items: [], fail: true }));
    await page.click('#start-confirm');
    await page.waitForSelector('#execution-graph g.node');
    const t = await api('GetActivityTask', { activityArn, workerName: 'e2e-worker' });
    await api('SendTaskFailure', { taskToken: t.taskToken, error: 'Fatal.Error', cause: 'the card service is down' });
    await waitFor('FAILED', async () => /FAILED/.test(await page.textContent('#execution-status')), 30000);
    assert.equal(await status('Charge'), 'failed');
    assert.equal(await status('Fanout'), 'notreached');
    assert.match(await page.textContent('#execution-error'), /Fatal\.Error/);
    assert.equal(await page.locator('#redrive-execution').count(), 1);
    await page.screenshot({ path: join(shots, 'execution-failed.png') });
  });

  await step('stop a running execution (confirmed in a dialog)', async () => {
    await page.goto(`${endpoint}/#/state-machines/${machineArn}`);
    await page.click('#start-execution');
    await page.fill('#exec-name', `stop-${suffix}`);
    await page.fill('#exec-input', JSON.stringify({ amount: 500, items: [], fail: false }));
    await page.click('#start-confirm');
    await waitFor('Charge running', async () => (await status('Charge')) === 'running');
    await page.click('#stop-execution');
    await page.click('dialog[open] button.danger');
    await waitFor('ABORTED', async () => /ABORTED/.test(await page.textContent('#execution-status')), 15000);
    assert.equal(await status('Charge'), 'aborted');
    assert.equal(await status('Prepare'), 'succeeded');
  });

  await step('executions list: status filter and search by name', async () => {
    await page.goto(`${endpoint}/#/state-machines/${machineArn}`);
    await page.waitForSelector('#executions tbody tr[data-status]');
    assert.equal(await page.locator('#executions tbody tr[data-status]').count(), 3);
    await page.selectOption('#status-filter', 'FAILED');
    await waitFor('filtered', async () => (await page.locator('#executions tbody tr[data-status]').count()) === 1);
    assert.equal(await page.getAttribute('#executions tbody tr[data-status]', 'data-status'), 'FAILED');
    await page.selectOption('#status-filter', '');
    await waitFor('all', async () => (await page.locator('#executions tbody tr[data-status]').count()) === 3);
    await page.fill('#exec-search', `run-${suffix}`);
    await waitFor('searched', async () => (await page.locator('#executions tbody tr[data-status]').count()) === 1);
    await page.goto(`${endpoint}/#/`);
    const row = page.locator(`#state-machines tr[data-name="${machineName}"]`);
    await waitFor('counts', async () => (await row.locator('td[data-status="SUCCEEDED"]').textContent()) === '1'
      && (await row.locator('td[data-status="FAILED"]').textContent()) === '1'
      && (await row.locator('td[data-status="ABORTED"]').textContent()) === '1');
    await page.screenshot({ path: join(shots, 'state-machines.png'), fullPage: true });
  });

  await step('a 40-state machine stays readable (screenshot)', async () => {
    const big = await api('CreateStateMachine', { name: `console-big-${suffix}`, definition: JSON.stringify(bigDefinition()) });
    await page.goto(`${endpoint}/#/state-machines/${big.stateMachineArn}/definition`);
    await page.waitForSelector('#definition-graph g.node[data-state="Step35"]');
    assert.equal(await page.locator('#definition-graph g.node').count(), 38);
    await page.screenshot({ path: join(shots, 'definition-40-states.png') });
    await page.click('#definition-graph button:has-text("Fit")');
    await page.screenshot({ path: join(shots, 'definition-40-states-fit.png') });
  });

  await step('narrow width (phone): execution view', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${endpoint}/#/executions/${execArn}`);
    await page.waitForSelector('#execution-graph g.node[data-status="retried"]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `no horizontal page scroll at 390 px (overflow ${overflow})`);
    await page.screenshot({ path: join(shots, 'execution-narrow.png'), fullPage: true });
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  await step('reload keeps the route; sign out returns to the sign-in form', async () => {
    await page.goto(`${endpoint}/#/executions/${execArn}`);
    await page.reload();
    await page.waitForSelector('#execution-graph g.node[data-status="retried"]');
    await page.click('#who button:has-text("Sign out")');
    await page.waitForSelector('form.signin');
    assert.equal((await context.cookies()).find((x) => x.name === 'stepline_session'), undefined);
  });

  await step('no console errors or warnings', async () => {
    assert.deepEqual(consoleErrors, []);
  });
} catch (e) {
  problems.push(e);
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  if (consoleErrors.length) console.log(`console messages:\n${consoleErrors.join('\n')}`);
} finally {
  await browser.close();
}
console.log(`console e2e: ${passed} passed, ${problems.length} failed`);
process.exit(problems.length ? 1 : 0);
