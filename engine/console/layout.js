// A layered (Sugiyama-style) layout for directed graphs, top to bottom. Pure: no DOM.
//
//   layout({nodes: [{id, width, height}], edges: [{id, from, to, labelWidth, labelHeight}]})
//     → {nodes: {id: {x, y, width, height}}, edges: {id: {points, label: {x, y}}}, width, height}
//
// Steps: break cycles (DFS back edges are reversed), rank by longest path with every edge
// spanning two ranks (the odd rank in between carries the edge's label or a bend point), add
// dummy nodes on long edges, order each rank by barycenters (sweeps, keeping the order with
// the fewest crossings), place x by weighted isotonic regression towards the neighbours'
// centres (so nodes never overlap and edges straighten), stack the ranks vertically.

const NODE_SEP = 28;
const DUMMY_SEP = 12;
const RANK_SEP = 14;

export function layout(graph, opts = {}) {
  const nodeSep = opts.nodeSep ?? NODE_SEP;
  const rankSep = opts.rankSep ?? RANK_SEP;
  const nodes = new Map();
  for (const n of graph.nodes) {
    nodes.set(n.id, { id: n.id, width: n.width, height: n.height, dummy: false, rank: 0, order: 0, x: 0, y: 0 });
  }
  const edges = graph.edges.filter((e) => nodes.has(e.from) && nodes.has(e.to));
  const selfLoops = edges.filter((e) => e.from === e.to);
  const real = edges.filter((e) => e.from !== e.to);

  // 1. Cycles: reverse DFS back edges, visiting nodes in input order (the start first).
  const out = new Map([...nodes.keys()].map((id) => [id, []]));
  real.forEach((e) => out.get(e.from).push(e));
  const reversed = new Set();
  const state = new Map();
  const dfs = (root) => {
    const stack = [[root, 0]];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const list = out.get(top[0]);
      if (top[1] >= list.length) {
        state.set(top[0], 2);
        stack.pop();
        continue;
      }
      const e = list[top[1]++];
      const st = state.get(e.to);
      if (st === 1) reversed.add(e);
      else if (!st) {
        state.set(e.to, 1);
        stack.push([e.to, 0]);
      }
    }
  };
  for (const id of nodes.keys()) if (!state.get(id)) dfs(id);
  const dag = real.map((e) => (reversed.has(e) ? { e, from: e.to, to: e.from } : { e, from: e.from, to: e.to }));

  // 2. Ranks: longest path, each edge spans 2 ranks.
  const indeg = new Map([...nodes.keys()].map((id) => [id, 0]));
  const succ = new Map([...nodes.keys()].map((id) => [id, []]));
  const pred = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const d of dag) {
    indeg.set(d.to, indeg.get(d.to) + 1);
    succ.get(d.from).push(d.to);
    pred.get(d.to).push(d.from);
  }
  const queue = [...nodes.keys()].filter((id) => indeg.get(id) === 0);
  const topo = [];
  while (queue.length) {
    const id = queue.shift();
    topo.push(id);
    for (const t of succ.get(id)) {
      indeg.set(t, indeg.get(t) - 1);
      if (indeg.get(t) === 0) queue.push(t);
    }
  }
  for (const id of topo) {
    const n = nodes.get(id);
    for (const p of pred.get(id)) n.rank = Math.max(n.rank, nodes.get(p).rank + 2);
  }
  // Sources other than the first node sit just above their nearest successor.
  const first = graph.nodes[0]?.id;
  for (const id of [...topo].reverse()) {
    const n = nodes.get(id);
    if (id !== first && pred.get(id).length === 0 && succ.get(id).length) {
      n.rank = Math.min(...succ.get(id).map((t) => nodes.get(t).rank)) - 2;
    }
  }
  const minRank = Math.min(0, ...[...nodes.values()].map((n) => n.rank));
  nodes.forEach((n) => { n.rank -= minRank; });

  // 3. Dummy chains for every edge.
  const chains = [];
  let dummyId = 0;
  for (const d of dag) {
    const from = nodes.get(d.from);
    const to = nodes.get(d.to);
    const chain = [from];
    for (let r = from.rank + 1; r < to.rank; r++) {
      const labelled = r === from.rank + 1 && d.e.labelWidth;
      const dn = {
        id: `\u0000d${dummyId++}`, dummy: true, rank: r, order: 0, x: 0, y: 0,
        width: labelled ? d.e.labelWidth : 2,
        height: labelled ? d.e.labelHeight || 16 : 0,
        label: labelled,
      };
      nodes.set(dn.id, dn);
      chain.push(dn);
    }
    chain.push(to);
    chains.push({ d, chain });
  }
  const up = new Map([...nodes.keys()].map((id) => [id, []]));
  const down = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const { chain } of chains) {
    for (let i = 0; i + 1 < chain.length; i++) {
      down.get(chain[i].id).push(chain[i + 1]);
      up.get(chain[i + 1].id).push(chain[i]);
    }
  }

  // 4. Order within ranks.
  const maxRank = Math.max(0, ...[...nodes.values()].map((n) => n.rank));
  let ranks = Array.from({ length: maxRank + 1 }, () => []);
  // Initial order: DFS from the first node, so branches stay together.
  const seen = new Set();
  const visit = (n) => {
    const stack = [n];
    while (stack.length) {
      const v = stack.pop();
      if (seen.has(v.id)) continue;
      seen.add(v.id);
      ranks[v.rank].push(v);
      const next = down.get(v.id);
      for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]);
    }
  };
  for (const n of nodes.values()) if (!n.dummy && up.get(n.id).length === 0) visit(n);
  for (const n of nodes.values()) visit(n);
  const renumber = (rs) => rs.forEach((r) => r.forEach((n, i) => { n.order = i; }));
  renumber(ranks);
  const crossings = (rs) => {
    let c = 0;
    for (let r = 0; r + 1 < rs.length; r++) {
      const segs = [];
      for (const n of rs[r]) for (const m of down.get(n.id)) segs.push([n.order, m.order]);
      for (let i = 0; i < segs.length; i++) {
        for (let j = i + 1; j < segs.length; j++) {
          if ((segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0) c++;
        }
      }
    }
    return c;
  };
  let best = ranks.map((r) => [...r]);
  let bestC = crossings(ranks);
  for (let iter = 0; iter < 12 && bestC > 0; iter++) {
    const downward = iter % 2 === 0;
    const seq = downward ? ranks.keys() : [...ranks.keys()].reverse();
    for (const r of seq) {
      const nbr = downward ? up : down;
      const bary = new Map();
      for (const n of ranks[r]) {
        const ns = nbr.get(n.id);
        bary.set(n, ns.length ? ns.reduce((a, m) => a + m.order, 0) / ns.length : n.order);
      }
      ranks[r].sort((a, b) => bary.get(a) - bary.get(b) || a.order - b.order);
      ranks[r].forEach((n, i) => { n.order = i; });
    }
    const c = crossings(ranks);
    if (c < bestC) {
      bestC = c;
      best = ranks.map((rr) => [...rr]);
    }
  }
  ranks = best;
  renumber(ranks);

  // 5. x: start packed, then pull each node towards its neighbours' centres.
  const sepBetween = (a, b) => (a.width + b.width) / 2 + (a.dummy && b.dummy ? DUMMY_SEP : nodeSep);
  for (const r of ranks) {
    let x = 0;
    r.forEach((n, i) => {
      if (i > 0) x += sepBetween(r[i - 1], n);
      n.x = x;
    });
    const mid = x / 2;
    r.forEach((n) => { n.x -= mid; });
  }
  const place = (r, desired, weight) => {
    // Minimise Σ w·(x − d)² subject to x[i+1] − x[i] ≥ sep(i, i+1): isotonic regression on
    // x − offset (pool adjacent violators).
    const offs = [0];
    for (let i = 1; i < r.length; i++) offs.push(offs[i - 1] + sepBetween(r[i - 1], r[i]));
    const blocks = [];
    r.forEach((n, i) => {
      blocks.push({ sum: weight[i] * (desired[i] - offs[i]), w: weight[i], n: 1 });
      while (blocks.length > 1) {
        const b = blocks[blocks.length - 1];
        const a = blocks[blocks.length - 2];
        if (a.sum / a.w <= b.sum / b.w) break;
        a.sum += b.sum; a.w += b.w; a.n += b.n;
        blocks.pop();
      }
    });
    let i = 0;
    for (const b of blocks) {
      const v = b.sum / b.w;
      for (let k = 0; k < b.n; k++, i++) r[i].x = v + offs[i];
    }
  };
  for (let iter = 0; iter < 8; iter++) {
    const order = iter % 2 === 0 ? [...ranks.keys()] : [...ranks.keys()].reverse();
    for (const ri of order) {
      const r = ranks[ri];
      if (!r.length) continue;
      const desired = [];
      const weight = [];
      for (const n of r) {
        const ns = iter < 6 ? (iter % 2 === 0 ? up : down).get(n.id) : [...up.get(n.id), ...down.get(n.id)];
        if (ns.length) {
          desired.push(ns.reduce((a, m) => a + m.x, 0) / ns.length);
          // Dummies pull hard so long edges stay straight.
          weight.push(n.dummy ? 4 : 1 + ns.length * 0.1);
        } else {
          desired.push(n.x);
          weight.push(0.5);
        }
      }
      place(r, desired, weight);
    }
  }

  // 6. y: ranks stacked.
  let y = 0;
  for (const r of ranks) {
    const hgt = Math.max(0, ...r.map((n) => n.height));
    r.forEach((n) => { n.y = y + hgt / 2; });
    y += hgt + rankSep;
  }
  const all = [...nodes.values()];
  const minX = Math.min(...all.map((n) => n.x - n.width / 2));
  const maxX = Math.max(...all.map((n) => n.x + n.width / 2));
  all.forEach((n) => { n.x -= minX; });
  let width = maxX - minX;
  const height = Math.max(0, y - rankSep);

  // Output.
  const result = { nodes: {}, edges: {}, width, height };
  for (const n of nodes.values()) {
    if (!n.dummy) result.nodes[n.id] = { x: n.x, y: n.y, width: n.width, height: n.height };
  }
  for (const { d, chain } of chains) {
    const a = chain[0];
    const b = chain[chain.length - 1];
    const points = [{ x: a.x, y: a.y + a.height / 2 }];
    for (let i = 1; i + 1 < chain.length; i++) points.push({ x: chain[i].x, y: chain[i].y });
    points.push({ x: b.x, y: b.y - b.height / 2 });
    const labelNode = chain.find((n) => n.label);
    const rev = reversed.has(d.e);
    result.edges[d.e.id] = {
      points: rev ? points.reverse() : points,
      reversed: rev,
      label: labelNode ? { x: labelNode.x, y: labelNode.y } : null,
    };
  }
  for (const e of selfLoops) {
    const n = nodes.get(e.from);
    const x = n.x + n.width / 2;
    result.edges[e.id] = {
      points: [{ x, y: n.y - 8 }, { x: x + 24, y: n.y - 14 }, { x: x + 24, y: n.y + 14 }, { x, y: n.y + 8 }],
      reversed: false,
      selfLoop: true,
      label: e.labelWidth ? { x: x + 28 + e.labelWidth / 2, y: n.y } : null,
    };
    width = Math.max(width, x + 32 + (e.labelWidth || 0));
  }
  result.width = width;
  return result;
}
