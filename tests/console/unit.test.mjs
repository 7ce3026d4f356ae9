// Unit tests of the console's DOM-free modules (layout, graph model, history analysis, JSON
// pointer lookup), run with Node's test runner: `node --test tests/console/unit.test.mjs`.
// The modules are plain ES modules named *.js in engine/console/ (no package.json there), so
// they are copied into a temporary directory marked as ESM before being imported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const src = join(dirname(fileURLToPath(import.meta.url)), '../../engine/console');
const dir = mkdtempSync(join(tmpdir(), 'stepline-console-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'package.json'), '{"type": "module"}');
for (const f of readdirSync(src).filter((x) => x.endsWith('.js'))) copyFileSync(join(src, f), join(dir, f));
const load = (m) => import(pathToFileURL(join(dir, m)).href);
const { layout } = await load('layout.js');
const { buildScope, summarizeRule } = await load('graph.js');
const { analyze, stateStatuses } = await load('history.js');
const { pointerRange, lineCol } = await load('dom.js');

const overlaps = (a, b) => Math.abs(a.x - b.x) * 2 < a.width + b.width && Math.abs(a.y - b.y) * 2 < a.height + b.height;

test('layout: ranks go down the edges, nodes never overlap, cycles are handled', () => {
  const nodes = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, width: 120, height: 40 }));
  const edges = [
    { id: '1', from: 'a', to: 'b' }, { id: '2', from: 'b', to: 'c', labelWidth: 60 }, { id: '3', from: 'b', to: 'd' },
    { id: '4', from: 'c', to: 'e' }, { id: '5', from: 'd', to: 'e' }, { id: '6', from: 'e', to: 'b' }, { id: '7', from: 'd', to: 'd' },
  ];
  const l = layout({ nodes, edges });
  const p = l.nodes;
  assert.ok(p.a.y < p.b.y && p.b.y < p.c.y && p.c.y < p.e.y && p.d.y < p.e.y);
  const list = Object.values(p);
  for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) assert.ok(!overlaps(list[i], list[j]), `${i} ${j}`);
  assert.ok(l.edges['6'].reversed, 'the back edge is drawn upwards');
  assert.ok(l.edges['2'].label, 'a labelled edge gets a label position');
  assert.ok(l.edges['7'].selfLoop);
  for (const n of list) assert.ok(n.x - n.width / 2 >= -0.001 && n.x + n.width / 2 <= l.width + 0.001);
});

test('layout: 40 states with branches and loops stay free of overlaps', () => {
  const states = {};
  for (let i = 0; i < 40; i++) {
    const next = i < 39 ? `S${i + 1}` : 'End';
    states[`S${i}`] = i % 7 === 3
      ? { Type: 'Choice', Choices: [{ Variable: '$.x', NumericLessThan: i, Next: next }], Default: `S${Math.max(0, i - 3)}` }
      : { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Next: next, Catch: i % 9 === 0 ? [{ ErrorEquals: ['States.ALL'], Next: 'End' }] : undefined };
  }
  states.End = { Type: 'Succeed' };
  const scope = buildScope({ StartAt: 'S0', States: states });
  const list = Object.values(scope.layout.nodes);
  assert.equal(list.length, 43);
  for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) assert.ok(!overlaps(list[i], list[j]));
});

test('graph model: Choice rules summarised, Default and Catch edges, nested groups', () => {
  assert.equal(summarizeRule({ Variable: '$.x', NumericGreaterThan: 10, Next: 'A' }), '$.x > 10');
  assert.equal(summarizeRule({ Variable: '$.s', StringEqualsPath: '$.t' }), '$.s == $.t');
  assert.equal(summarizeRule({ And: [{ Variable: '$.a', IsPresent: true }, { Not: { Variable: '$.b', BooleanEquals: false } }] }), '$.a is present and not ($.b == false)');
  assert.equal(summarizeRule({ Condition: '{% $states.input.n > 1 %}' }), '$states.input.n > 1');
  const scope = buildScope({
    StartAt: 'C',
    States: {
      C: { Type: 'Choice', Choices: [{ Variable: '$.n', NumericLessThanEquals: 1, Next: 'P' }], Default: 'F' },
      P: { Type: 'Parallel', Branches: [{ StartAt: 'X', States: { X: { Type: 'Pass', End: true } } }, { StartAt: 'M', States: { M: { Type: 'Map', ItemProcessor: { StartAt: 'Y', States: { Y: { Type: 'Pass', End: true } } }, End: true } } }], Catch: [{ ErrorEquals: ['A', 'B'], Next: 'F' }], End: true },
      F: { Type: 'Fail' },
    },
  });
  const kinds = scope.edges.map((e) => `${e.kind}:${e.label}`);
  assert.ok(kinds.includes('choice:$.n <= 1') && kinds.includes('default:Default') && kinds.includes('catch:A, B'));
  const p = scope.nodes.find((n) => n.id === 'P');
  assert.equal(p.children.length, 2);
  assert.ok(p.children[1].nodes.find((n) => n.id === 'M').children[0].nodes.some((n) => n.id === 'Y'));
});

test('history: retried, caught, failed, not reached and Map iterations', () => {
  const def = {
    StartAt: 'T',
    States: {
      T: { Type: 'Task', Resource: 'arn:aws:states:us-east-1:1:activity:a', Next: 'M' },
      M: { Type: 'Map', ItemProcessor: { StartAt: 'C', States: { C: { Type: 'Choice', Choices: [{ Variable: '$', NumericGreaterThan: 1, Next: 'Bad' }], Default: 'Ok' }, Bad: { Type: 'Fail', Error: 'E', Cause: 'too big' }, Ok: { Type: 'Pass', End: true } } }, Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Done' }], Next: 'Never' },
      Never: { Type: 'Pass', Next: 'Done' },
      Done: { Type: 'Succeed' },
    },
  };
  let id = 0;
  const ev = (type, prev, details) => ({ id: ++id, previousEventId: prev, timestamp: 1000 + id / 10, type, ...details });
  const entered = (t, name, prev) => ev(`${t}StateEntered`, prev, { stateEnteredEventDetails: { name, input: '1' } });
  const exited = (t, name, prev) => ev(`${t}StateExited`, prev, { stateExitedEventDetails: { name, output: '2' } });
  const events = [];
  const push = (e) => { events.push(e); return e.id; };
  let last = push(ev('ExecutionStarted', 0, {}));
  last = push(entered('Task', 'T', 0));
  last = push(ev('ActivityScheduled', last, {}));
  last = push(ev('ActivityFailed', last, { activityFailedEventDetails: { error: 'Busy', cause: 'x' } }));
  last = push(ev('ActivityScheduled', last, {}));
  last = push(ev('ActivitySucceeded', last, { activitySucceededEventDetails: { output: '{}' } }));
  last = push(exited('Task', 'T', last));
  last = push(entered('Map', 'M', last));
  last = push(ev('MapStateStarted', last, {}));
  for (const i of [0, 1]) {
    const s = push(ev('MapIterationStarted', last, { mapIterationStartedEventDetails: { name: 'M', index: i } }));
    let l = push(entered('Choice', 'C', s));
    l = push(exited('Choice', 'C', l));
    if (i === 0) {
      l = push(entered('Pass', 'Ok', l));
      l = push(exited('Pass', 'Ok', l));
      last = push(ev('MapIterationSucceeded', l, { mapIterationSucceededEventDetails: { name: 'M', index: i } }));
    } else {
      l = push(entered('Fail', 'Bad', l));
      last = push(ev('MapIterationFailed', l, { mapIterationFailedEventDetails: { name: 'M', index: i } }));
    }
  }
  last = push(ev('MapStateFailed', last, {}));
  last = push(exited('Map', 'M', last));
  last = push(entered('Succeed', 'Done', last));
  last = push(exited('Succeed', 'Done', last));
  push(ev('ExecutionSucceeded', last, {}));
  const a = analyze(events, def, 'SUCCEEDED');
  const st = stateStatuses(a);
  assert.equal(st.get('T').status, 'retried');
  assert.equal(st.get('T').attempts, 2);
  assert.equal(st.get('M').status, 'caught');
  assert.equal(st.get('M').runs[0].error, 'E');
  assert.equal(st.get('Bad').status, 'failed');
  assert.equal(st.get('Ok').status, 'succeeded');
  assert.equal(st.get('Done').status, 'succeeded');
  assert.equal(st.has('Never'), false, 'not reached');
  const its = a.iterations.get('M');
  assert.deepEqual(its.map((i) => i.status), ['succeeded', 'failed']);
  assert.equal(its[1].failedRun.name, 'Bad');
  assert.equal(its[1].cause, 'too big');
  const only1 = stateStatuses(a, its[1]);
  assert.equal(only1.has('Ok'), false, 'iteration 1 never reached Ok');
  assert.ok(a.taken.has('T\u2192M') && a.taken.has('M\u2192Done'));
  const running = stateStatuses(analyze(events.slice(0, 3), def, 'RUNNING'));
  assert.equal(running.get('T').status, 'running');
});

test('JSON pointers map to text positions', () => {
  const text = '{\n  "States": {\n    "A": {"Type": "Pass", "Next": "B"},\n    "L": [1, {"x": 2}]\n  }\n}';
  const r = pointerRange(text, '/States/A/Next');
  assert.equal(text.slice(r.start, r.end), '"Next": "B"');
  assert.equal(lineCol(text, r.start).line, 3);
  const arr = pointerRange(text, '/States/L/1/x');
  assert.equal(text.slice(arr.start, arr.end), '"x": 2');
  const missing = pointerRange(text, '/States/Nope');
  assert.ok(missing.start >= 0);
  assert.deepEqual(pointerRange('not json', '/a'), { start: 0, end: 0 });
});
