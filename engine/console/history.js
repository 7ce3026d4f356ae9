// What happened to each state, computed from GetExecutionHistory events. Pure: no DOM.
//
// A *run* is one visit of a state (its …StateEntered event up to its …StateExited, or the end).
// Events without a state name (Task*, Activity*, Map*, Parallel*) belong to the run their
// previousEventId chain leads to, else to the latest open run of the matching type. A run's
// status: succeeded; retried (failed, retried, then succeeded); caught (its last attempt failed
// and a Catch exited it); failed; aborted; running. Map iterations are tracked by index with
// the state runs inside them, so the console can say which item failed and why.

const FAILURE_DETAILS = {
  TaskFailed: 'taskFailedEventDetails',
  TaskTimedOut: 'taskTimedOutEventDetails',
  TaskSubmitFailed: 'taskSubmitFailedEventDetails',
  TaskStartFailed: 'taskStartFailedEventDetails',
  ActivityFailed: 'activityFailedEventDetails',
  ActivityTimedOut: 'activityTimedOutEventDetails',
  ActivityScheduleFailed: 'activityScheduleFailedEventDetails',
  LambdaFunctionFailed: 'lambdaFunctionFailedEventDetails',
  LambdaFunctionTimedOut: 'lambdaFunctionTimedOutEventDetails',
  MapRunFailed: 'mapRunFailedEventDetails',
};

const PRIORITY = ['running', 'failed', 'aborted', 'caught', 'retried', 'succeeded'];

/** The `…EventDetails` object of an event (there is at most one). */
export function detailsOf(ev) {
  for (const [k, v] of Object.entries(ev)) if (k.endsWith('EventDetails')) return v;
  return null;
}

/** State name → {type, map (nearest enclosing Map), def} for a definition. */
export function stateIndex(definition) {
  const out = new Map();
  const walk = (machine, map) => {
    if (!machine || typeof machine.States !== 'object') return;
    for (const [name, st] of Object.entries(machine.States || {})) {
      out.set(name, { type: st?.Type, map, def: st || {} });
      if (st?.Type === 'Parallel') (st.Branches || []).forEach((b) => walk(b, map));
      if (st?.Type === 'Map') walk(st.ItemProcessor || st.Iterator, name);
    }
  };
  walk(definition, null);
  return out;
}

/**
 * events: GetExecutionHistory events (ascending); definition: parsed ASL; execStatus: the
 * execution's status (RUNNING, SUCCEEDED, …).
 */
export function analyze(events, definition, execStatus) {
  const index = stateIndex(definition);
  const runs = [];
  const open = [];
  const byEvent = new Map();
  const iterOf = new Map();
  const iterations = new Map(); // map state name → [iteration]
  const iterByKey = new Map();
  const taken = new Set();
  let epoch = 0;
  const execution = { error: null, cause: null };

  const close = (run) => {
    const i = open.indexOf(run);
    if (i >= 0) open.splice(i, 1);
  };
  const owner = (ev, match) => {
    const p = byEvent.get(ev.previousEventId);
    if (p && open.includes(p) && match(p)) return p;
    for (let i = open.length - 1; i >= 0; i--) if (match(open[i])) return open[i];
    return null;
  };
  const iterationOf = (ev, name) => {
    const cand = iterOf.get(ev.previousEventId) || null;
    const encl = index.get(name)?.map ?? null;
    if (!encl) return null;
    if (cand && cand.map === encl) return cand;
    // Fall back to the latest running iteration of the enclosing Map.
    const list = iterations.get(encl) || [];
    for (let i = list.length - 1; i >= 0; i--) if (list[i].status === 'running') return list[i];
    return null;
  };

  for (const ev of events) {
    const d = detailsOf(ev) || {};
    const t = ev.type;
    let m;
    if ((m = t.match(/^(\w+?)StateEntered$/))) {
      const name = d.name;
      const iteration = iterationOf(ev, name);
      const run = {
        name, type: m[1], enteredId: ev.id, enteredAt: ev.timestamp, input: d.input,
        exitedId: null, exitedAt: null, output: undefined, attempts: 0, failures: [],
        lastOutcome: null, iteration, epoch, aborted: false, events: [ev],
      };
      const prev = byEvent.get(ev.previousEventId);
      if (prev && prev !== run && prev.exitedId !== null) taken.add(`${prev.name}\u2192${name}`);
      runs.push(run);
      byEvent.set(ev.id, run);
      iterOf.set(ev.id, iteration);
      if (iteration) iteration.runs.push(run);
      if (run.type === 'Fail') {
        const def = index.get(name)?.def || {};
        run.failures.push({
          eventId: ev.id, type: 'FailStateEntered',
          error: def.Error ?? (def.ErrorPath ? `(from ErrorPath ${def.ErrorPath})` : null),
          cause: def.Cause ?? (def.CausePath ? `(from CausePath ${def.CausePath})` : null),
        });
        run.lastOutcome = 'fail';
      } else {
        open.push(run);
      }
      continue;
    }
    if ((m = t.match(/^(\w+?)StateExited$/))) {
      const run = owner(ev, (r) => r.name === d.name);
      if (run) {
        run.exitedId = ev.id;
        run.exitedAt = ev.timestamp;
        run.output = d.output;
        run.events.push(ev);
        byEvent.set(ev.id, run);
        iterOf.set(ev.id, run.iteration);
        close(run);
      }
      continue;
    }
    if (t === 'MapIterationStarted' || t === 'MapIterationSucceeded' || t === 'MapIterationFailed' || t === 'MapIterationAborted') {
      const run = owner(ev, (r) => r.type === 'Map' && r.name === d.name);
      const key = `${run ? run.enteredId : d.name}:${d.index}`;
      let it = iterByKey.get(key);
      if (!it) {
        it = { map: d.name, index: d.index, status: 'running', run, runs: [], startedAt: ev.timestamp, endedAt: null, failedRun: null, error: null, cause: null };
        iterByKey.set(key, it);
        if (!iterations.has(d.name)) iterations.set(d.name, []);
        iterations.get(d.name).push(it);
      }
      if (t === 'MapIterationStarted') {
        it.status = 'running';
        it.startedAt = ev.timestamp;
        iterOf.set(ev.id, it);
      } else {
        it.status = { MapIterationSucceeded: 'succeeded', MapIterationFailed: 'failed', MapIterationAborted: 'aborted' }[t];
        it.endedAt = ev.timestamp;
        if (t === 'MapIterationFailed') {
          const culprit = byEvent.get(ev.previousEventId);
          const failing = culprit && culprit.iteration === it ? culprit : [...it.runs].reverse().find((r) => r.failures.length) || null;
          it.failedRun = failing;
          const f = failing?.failures[failing.failures.length - 1];
          it.error = f?.error ?? null;
          it.cause = f?.cause ?? null;
        }
      }
      if (run) {
        run.events.push(ev);
        byEvent.set(ev.id, run);
      }
      continue;
    }
    if (t === 'ExecutionRedriven') {
      epoch++;
      continue;
    }
    if (t === 'ExecutionFailed' || t === 'ExecutionTimedOut' || t === 'ExecutionAborted') {
      execution.error = d.error ?? null;
      execution.cause = d.cause ?? null;
      const culprit = byEvent.get(ev.previousEventId);
      if (t !== 'ExecutionAborted' && culprit && open.includes(culprit) && culprit.lastOutcome !== 'fail') {
        culprit.failures.push({ eventId: ev.id, type: t, error: d.error ?? null, cause: d.cause ?? null });
        culprit.lastOutcome = 'fail';
      }
      continue;
    }
    if (t.startsWith('Execution')) continue;
    // Events of a running state.
    let match;
    if (/^(Task|Activity|LambdaFunction)/.test(t)) match = (r) => r.type === 'Task';
    else if (t.startsWith('MapRun') || t.startsWith('MapState')) match = (r) => r.type === 'Map';
    else if (t.startsWith('ParallelState')) match = (r) => r.type === 'Parallel';
    else if (t === 'EvaluationFailed') match = (r) => r.name === d.state;
    else if ((m = t.match(/^(\w+?)StateAborted$/))) match = (r) => r.type === m[1];
    else match = () => true;
    const run = owner(ev, match);
    if (!run) continue;
    run.events.push(ev);
    byEvent.set(ev.id, run);
    iterOf.set(ev.id, run.iteration);
    if (t === 'TaskScheduled' || t === 'ActivityScheduled' || t === 'LambdaFunctionScheduled') {
      run.attempts++;
      run.lastOutcome = 'pending';
    } else if ((t === 'MapStateStarted' || t === 'ParallelStateStarted')) {
      run.attempts++;
      run.lastOutcome = 'pending';
    } else if (FAILURE_DETAILS[t] || t === 'EvaluationFailed') {
      run.failures.push({ eventId: ev.id, type: t, error: d.error ?? null, cause: d.cause ?? null });
      run.lastOutcome = 'fail';
    } else if (t === 'MapStateFailed' || t === 'ParallelStateFailed') {
      // The error is the failed child's: find the last failure among runs after this one.
      const child = [...runs].reverse().find((r) => r !== run && r.enteredId > run.enteredId && r.failures.length);
      const f = child?.failures[child.failures.length - 1];
      run.failures.push({ eventId: ev.id, type: t, error: f?.error ?? null, cause: f?.cause ?? null, from: child?.name });
      run.lastOutcome = 'fail';
    } else if (/Succeeded$/.test(t)) {
      run.lastOutcome = 'ok';
      if (d.output !== undefined) run.result = d.output;
    } else if (/StateAborted$/.test(t)) {
      run.aborted = true;
      close(run);
    }
  }

  const running = execStatus === 'RUNNING' || execStatus === 'PENDING_REDRIVE';
  for (const r of runs) {
    if (r.type === 'Fail') r.status = 'failed';
    else if (r.exitedId !== null) r.status = r.failures.length ? (r.lastOutcome === 'fail' ? 'caught' : 'retried') : 'succeeded';
    else if (r.aborted) r.status = 'aborted';
    else if (running && r.epoch === epoch) r.status = 'running';
    else if (r.failures.length) r.status = 'failed';
    else r.status = execStatus === 'ABORTED' || r.epoch < epoch ? 'aborted' : execStatus === 'RUNNING' ? 'running' : 'failed';
    const last = r.failures[r.failures.length - 1];
    r.error = last?.error ?? null;
    r.cause = last?.cause ?? null;
    if (r.attempts === 0) r.attempts = 1;
  }
  const start = events.length ? events[0].timestamp : null;
  const end = events.length ? events[events.length - 1].timestamp : null;
  return { runs, byEvent, iterations, taken, execution, start, end, epoch };
}

/**
 * Aggregates runs per state: Map name → {status, attempts, runs}. With `iteration` (an
 * iteration object of `analysis.iterations`), states inside that Map count only that
 * iteration's runs.
 */
export function stateStatuses(analysis, iteration = null) {
  const byName = new Map();
  for (const r of analysis.runs) {
    if (!byName.has(r.name)) byName.set(r.name, []);
    byName.get(r.name).push(r);
  }
  const out = new Map();
  for (const [name, all] of byName) {
    let rs = all;
    if (iteration && all.some((r) => r.iteration && r.iteration.map === iteration.map)) {
      rs = all.filter((r) => r.iteration === iteration);
      if (!rs.length) continue;
    }
    // After a redrive, the latest epoch's runs replace earlier ones of the same state.
    const maxEpoch = Math.max(...rs.map((r) => r.epoch));
    const current = rs.filter((r) => r.epoch === maxEpoch);
    const status = PRIORITY.find((p) => current.some((r) => r.status === p)) || current[current.length - 1].status;
    out.set(name, { status, attempts: Math.max(...current.map((r) => r.attempts)), runs: rs });
  }
  return out;
}

/** One-line summary of an event's details for the history table. */
export function eventSummary(ev) {
  const d = detailsOf(ev);
  if (!d) return '';
  const clip = (x, n = 120) => {
    const str = String(x);
    return str.length > n ? `${str.slice(0, n - 1)}…` : str;
  };
  if (d.error !== undefined || d.cause !== undefined) return clip(`${d.error ?? ''}${d.cause ? `: ${d.cause}` : ''}`);
  if (d.index !== undefined) return `${d.name} [${d.index}]`;
  if (ev.type.endsWith('StateEntered')) return clip(`input ${d.input}`);
  if (ev.type.endsWith('StateExited')) return clip(`output ${d.output}`);
  if (d.resource) return clip(d.resource);
  if (d.output !== undefined) return clip(`output ${d.output}`);
  if (d.input !== undefined) return clip(`input ${d.input}`);
  if (d.workerName !== undefined) return `worker ${d.workerName}`;
  if (d.length !== undefined) return `${d.length} items`;
  if (d.redriveCount !== undefined) return `redrive #${d.redriveCount}`;
  return clip(JSON.stringify(d));
}
