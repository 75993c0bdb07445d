/*
 * chart.js — the console's plots: per-minute counts as lines in an SVG,
 * drawn here (no chart library). Every label is set with textContent.
 * LK.chart(title, step, end, [{name, values}]) returns a <figure>.
 */
'use strict';
(function () {
  const LK = window.LK = window.LK || {};
  const NS = 'http://www.w3.org/2000/svg';
  const W = 600, H = 170, L = 44, R = 8, T = 10, B = 22;
  const COLORS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#57606a'];

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function hhmm(unix) {
    const d = new Date(unix * 1000);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  /* A round upper bound for the y axis: 1, 2 or 5 times a power of ten. */
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  LK.COLORS = COLORS;

  LK.chart = function (title, step, end, series) {
    const fig = document.createElement('figure');
    fig.className = 'chart';
    const cap = document.createElement('figcaption');
    cap.textContent = title;
    fig.appendChild(cap);
    const n = Math.max(0, ...series.map(s => s.values.length));
    const max = niceMax(Math.max(0, ...series.map(s => Math.max(0, ...s.values))));
    const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title});
    const x = i => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
    const y = v => T + (H - T - B) * (1 - v / max);
    for (const f of [0, 0.5, 1]) {
      root.appendChild(svg('line', {x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: 'grid'}));
      root.appendChild(svg('text', {x: L - 4, y: y(max * f) + 4, 'text-anchor': 'end', class: 'tick'},
                           String(Math.round(max * f * 100) / 100)));
    }
    if (n > 0) {
      const start = end - (n - 1) * step;
      for (const [i, anchor] of [[0, 'start'], [Math.floor((n - 1) / 2), 'middle'], [n - 1, 'end']])
        root.appendChild(svg('text', {x: x(i), y: H - 6, 'text-anchor': anchor, class: 'tick'}, hhmm(start + i * step)));
    }
    series.forEach((s, k) => {
      if (s.values.length === 0) return;
      const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(Math.max(0, v)).toFixed(1)}`).join(' ');
      const line = svg('polyline', {points: pts, fill: 'none', stroke: COLORS[k % COLORS.length], 'stroke-width': 2});
      line.appendChild(svg('title', {}, s.name));
      root.appendChild(line);
    });
    fig.appendChild(root);
    const legend = document.createElement('ul');
    legend.className = 'legend';
    series.forEach((s, k) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = COLORS[k % COLORS.length];
      li.appendChild(sw);
      const total = s.values.reduce((a, b) => a + b, 0);
      const sec = n * step;
      li.appendChild(document.createTextNode(`${s.name}: ${total} in ${sec % 60 ? sec + ' s' : sec / 60 + ' min'}`));
      legend.appendChild(li);
    });
    if (series.length === 0) {
      const li = document.createElement('li');
      li.textContent = 'none in the period';
      legend.appendChild(li);
    }
    fig.appendChild(legend);
    return fig;
  };
})();
