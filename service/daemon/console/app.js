/*
 * app.js — the latchkey console (docs/console.md): one page, hash routes,
 * fetch() to latchkeyd's API with the session cookie (same origin) and the
 * CSRF token on every change. Text from the API only ever enters the page
 * as text (textContent / text nodes), never as HTML.
 *
 * Routes: #/signin, #/ (fleet overview), #/r/LOCATION/REGISTRY?filters
 * (device table), #/d/LOCATION/REGISTRY/DEVICE (device page; device.js).
 * Live updates: the shown view is polled every POLL_MS while the tab is
 * visible (no server push).
 */
'use strict';
(function () {
  const LK = window.LK = window.LK || {};
  const POLL_MS = 5000;
  const ROLES = {viewer: 1, deviceController: 2, provisioner: 3, editor: 4, admin: 5};
  let session = null;
  let view = null;      // {refresh: async fn} of the shown page
  let generation = 0;   // bumped on every route: late answers of a left page are dropped
  let busy = false;

  /* ---- the DOM, as text only ---- */

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
  }

  function append(e, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function replace(e, ...children) {
    e.replaceChildren();
    return append(e, children);
  }

  LK.h = h;
  LK.replace = replace;

  /* ---- times ---- */

  LK.ago = function (iso) {
    if (!iso) return 'never';
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return String(iso);
    const s = Math.round((Date.now() - t) / 1000);
    const abs = Math.abs(s);
    const span = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min`
      : abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} days`;
    return s >= 0 ? `${span} ago` : `in ${span}`;
  };

  /* A time cell: "5 min ago", the exact UTC time as its tooltip. */
  LK.when = function (iso) {
    return h('time', {datetime: iso || undefined, title: iso || undefined}, LK.ago(iso));
  };

  /* ---- the API ---- */

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }
  LK.ApiError = ApiError;

  LK.api = async function (method, url, body) {
    const headers = {};
    if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
    const opts = {method, headers, credentials: 'same-origin', cache: 'no-store'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(url, opts);
    const text = await r.text();
    let j = null;
    try {
      j = text ? JSON.parse(text) : null;
    } catch (e) {
      j = null;
    }
    if (!r.ok) {
      const err = (j && j.error) || {};
      if (r.status === 401 && session) {
        session = null;
        location.hash = '#/signin';
      }
      throw new ApiError(r.status, err.status || String(r.status), err.message || r.statusText || 'request failed');
    }
    return j || {};
  };

  LK.session = () => session;
  LK.can = role => session !== null && (ROLES[session.role] || 0) >= ROLES[role];
  LK.project = () => session.project;
  LK.regPath = (loc, reg) =>
    `projects/${encodeURIComponent(session.project)}/locations/${encodeURIComponent(loc)}/registries/${encodeURIComponent(reg)}`;

  /* ---- banner for errors and notes ---- */

  LK.banner = function (msg, kind) {
    const b = document.getElementById('banner');
    if (!msg) {
      b.hidden = true;
      return;
    }
    b.className = kind || 'error';
    replace(b, msg);
    b.hidden = false;
  };

  function stamp() {
    replace(document.getElementById('updated'), 'updated ', new Date().toLocaleTimeString());
  }

  /* ---- sign-in ---- */

  function signinView(main) {
    document.getElementById('who').textContent = '';
    document.getElementById('signout').hidden = true;
    const name = h('input', {id: 'signin-name', name: 'name', autocomplete: 'username', required: true});
    const pass = h('input', {id: 'signin-password', name: 'password', type: 'password',
                             autocomplete: 'current-password', required: true});
    const msg = h('p', {class: 'form-msg', id: 'signin-msg', role: 'status'});
    const form = h('form', {class: 'card signin', id: 'signin-form'},
      h('h1', {}, 'Sign in'),
      h('label', {}, 'Operator name', name),
      h('label', {}, 'Password', pass),
      h('button', {type: 'submit', id: 'signin-submit'}, 'Sign in'), msg,
      h('p', {class: 'hint'}, 'Operators are made with ', h('code', {}, 'latchkey operators create'), '.'));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      replace(msg, 'Signing in…');
      try {
        session = await LK.api('POST', 'api/signin', {name: name.value, password: pass.value});
        pass.value = '';
        location.hash = '#/';
        route();
      } catch (e) {
        replace(msg, e.status === 401 ? 'Wrong name or password.'
          : e.status === 429 ? 'Too many attempts: wait a minute, then try again.' : e.message);
      }
    });
    replace(main, form);
    name.focus();
    return null;
  }

  async function signout() {
    try {
      await LK.api('POST', 'api/signout');
    } catch (e) {
      /* the session is gone either way */
    }
    session = null;
    location.hash = '#/signin';
  }

  /* ---- fleet overview ---- */

  function overviewView(main) {
    const regs = h('div', {id: 'registries', class: 'cards'}, 'Loading…');
    const minutes = h('select', {id: 'series-minutes', 'aria-label': 'period'},
      [60, 180, 360, 720, 1440].map(m => h('option', {value: m, selected: m === 180}, `last ${m / 60} h`)));
    const charts = h('div', {id: 'charts', class: 'charts'});
    replace(main, h('h1', {}, 'Fleet of ', session.project),
      h('section', {}, h('h2', {}, 'Registries'), regs),
      h('section', {}, h('div', {class: 'row'}, h('h2', {}, 'Activity'), minutes), charts));
    const link = (loc, reg, state, label, n) =>
      h('a', {href: `#/r/${encodeURIComponent(loc)}/${encodeURIComponent(reg)}${state ? '?state=' + state : ''}`,
              class: `count ${state || 'all'}`, 'data-count': state || 'devices'},
        h('strong', {}, Number(n || 0).toLocaleString('en-US')), h('span', {}, label));
    async function refresh() {
      const ov = await LK.api('GET', `api/projects/${encodeURIComponent(session.project)}/overview`);
      const list = ov.registries || [];
      replace(regs, list.length === 0 ? h('p', {}, 'No registry in this project yet.') : list.map(r => {
        const m = /locations\/([^/]+)\/registries\/([^/]+)$/.exec(r.name) || [null, '?', r.name];
        const loc = m[1], reg = m[2];
        return h('article', {class: 'card registry', 'data-registry': reg},
          h('h3', {}, h('a', {href: `#/r/${encodeURIComponent(loc)}/${encodeURIComponent(reg)}`}, reg),
            h('small', {}, ' ', loc)),
          h('div', {class: 'counts'},
            link(loc, reg, '', 'devices', r.devices), link(loc, reg, 'online', 'online', r.online),
            link(loc, reg, 'offline', 'offline', r.offline), link(loc, reg, 'blocked', 'blocked', r.blocked),
            link(loc, reg, 'never', 'never seen', r.neverSeen)));
      }));
      let s;
      try {
        s = await LK.api('GET', `api/projects/${encodeURIComponent(session.project)}/series?minutes=${minutes.value}`);
      } catch (e) {
        // without the broker's metrics file latchkeyd has no series (FAILED_PRECONDITION): say so, in place
        if (e.code !== 'FAILED_PRECONDITION') throw e;
        replace(charts, h('p', {class: 'note'}, 'No plots: ', e.message));
        return;
      }
      const step = s.step || 60, end = s.end || Math.floor(Date.now() / 1000);
      // a sample is a minute unless latchkeyd samples faster (metrics_sample_seconds): say what is drawn
      const span = sec => sec % 3600 === 0 ? `${sec / 3600} h` : sec % 60 === 0 ? `${sec / 60} min` : `${sec} s`;
      for (const o of minutes.options) o.textContent = `last ${span(o.value * step)}`;
      const per = step === 60 ? 'minute' : step === 1 ? 'second' : span(step);
      // only the reasons that happened in the period: a line per reason that never did is noise
      const refusals = Object.entries(s.refusals || {}).filter(([, v]) => v.some(x => x > 0))
        .map(([k, v]) => ({name: k, values: v}));
      replace(charts,
        LK.chart(`Connects per ${per}`, step, end, [{name: 'connects', values: s.connects || []}]),
        LK.chart(`Refusals per ${per}, by reason`, step, end, refusals),
        LK.chart(`Events and states per ${per}`, step, end,
                 [{name: 'events', values: s.events || []}, {name: 'states', values: s.states || []}]));
    }
    minutes.addEventListener('change', () => poll());
    return {refresh};
  }

  /* ---- device table ---- */

  const FILTERS = ['q', 'state', 'silentHours', 'expiringDays'];

  function registryView(main, loc, reg, params) {
    const base = `api/${LK.regPath(loc, reg)}/devices`;
    const q = h('input', {id: 'search-q', type: 'search', placeholder: 'device id starts with…',
                          value: params.get('q') || '', autocomplete: 'off', 'aria-label': 'search by id prefix'});
    const state = h('select', {id: 'filter-state', 'aria-label': 'state'},
      [['', 'any state'], ['online', 'online'], ['offline', 'offline'], ['never', 'never seen'],
       ['blocked', 'blocked'], ['gateway', 'gateways']]
        .map(([v, t]) => h('option', {value: v, selected: params.get('state') === v}, t)));
    const silent = h('input', {id: 'filter-silent', type: 'number', min: 1, placeholder: 'hours',
                               value: params.get('silentHours') || '', 'aria-label': 'silent for hours'});
    const expiring = h('input', {id: 'filter-expiring', type: 'number', min: 0, placeholder: 'days',
                                 value: params.get('expiringDays') || '', 'aria-label': 'credential expiring within days'});
    const form = h('form', {class: 'filters', id: 'filters'}, q, state,
      h('label', {}, 'silent ≥ ', silent, ' h'), h('label', {}, 'credential expiring ≤ ', expiring, ' days'),
      h('button', {type: 'submit'}, 'Search'));
    const body = h('tbody', {id: 'devices'});
    const prev = h('button', {id: 'page-prev', type: 'button', disabled: true}, '‹ Previous');
    const next = h('button', {id: 'page-next', type: 'button', disabled: true}, 'Next ›');
    const where = h('span', {class: 'page-no'});
    const cols = ['Device', 'Presence', 'Last heartbeat', 'Last event', 'Last state', 'Config sent', 'Last error',
                  'Credential expiry'];
    replace(main, h('p', {class: 'crumbs'}, h('a', {href: '#/'}, 'Fleet'), ' › ', loc, ' › '),
      h('h1', {}, 'Registry ', reg), form,
      h('table', {class: 'devices'}, h('thead', {}, h('tr', {}, cols.map(c => h('th', {}, c)))), body),
      h('div', {class: 'pager'}, prev, where, next));
    const tokens = [''];   // the page tokens that led here: tokens[i] opens page i + 1
    let nextToken = '';

    function query() {
      const p = new URLSearchParams();
      for (const [k, v] of [['q', q.value.trim()], ['state', state.value], ['silentHours', silent.value],
                            ['expiringDays', expiring.value]])
        if (v) p.set(k, v);
      return p;
    }
    function apply() {
      const p = query().toString();
      history.replaceState(null, '', `#/r/${encodeURIComponent(loc)}/${encodeURIComponent(reg)}${p ? '?' + p : ''}`);
      tokens.length = 1;
      poll();
    }
    form.addEventListener('submit', ev => {
      ev.preventDefault();
      apply();
    });
    let typing = null;
    q.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(apply, 300);
    });
    state.addEventListener('change', apply);
    prev.addEventListener('click', () => {
      if (tokens.length > 1) tokens.pop();
      poll();
    });
    next.addEventListener('click', () => {
      if (nextToken) tokens.push(nextToken);
      poll();
    });

    async function refresh() {
      const p = query();
      p.set('pageSize', '50');
      const tok = tokens[tokens.length - 1];
      if (tok) p.set('pageToken', tok);
      const r = await LK.api('GET', `${base}?${p}`);
      const list = r.devices || [];
      nextToken = r.nextPageToken || '';
      const cell = (label, ...c) => h('td', {'data-label': label}, c);
      replace(body, list.length === 0 ? h('tr', {}, h('td', {colspan: cols.length, class: 'empty'},
                                                      'No device matches.')) : list.map(d =>
        h('tr', {'data-device': d.id},
          cell('Device', h('a', {class: 'device-link', href:
            `#/d/${encodeURIComponent(loc)}/${encodeURIComponent(reg)}/${encodeURIComponent(d.id)}`}, d.id),
               d.gateway ? h('span', {class: 'tag'}, 'gateway') : null),
          cell('Presence', LK.presence(d.presence, d.blocked)),
          cell('Last heartbeat', LK.when(d.lastHeartbeatTime)), cell('Last event', LK.when(d.lastEventTime)),
          cell('Last state', LK.when(d.lastStateTime)), cell('Config sent', LK.when(d.lastConfigSendTime)),
          cell('Last error', LK.when(d.lastErrorTime), d.lastErrorStatus ? h('small', {}, ' ',
               typeof d.lastErrorStatus === 'object' ? d.lastErrorStatus.message : d.lastErrorStatus) : null),
          cell('Credential expiry', d.credentialExpiry ? LK.when(d.credentialExpiry) : 'none'))));
      prev.disabled = tokens.length <= 1;
      next.disabled = !nextToken;
      replace(where, `page ${tokens.length}`);
    }
    return {refresh};
  }

  LK.presence = function (presence, blocked) {
    return [h('span', {class: `badge ${presence || 'never'}`}, presence === 'never' || !presence ? 'never seen' : presence),
            blocked ? h('span', {class: 'badge blocked'}, 'blocked') : null];
  };

  /* ---- routing and polling ---- */

  async function poll() {
    if (!view || busy) return;
    const g = generation;
    busy = true;
    try {
      await view.refresh();
      if (g === generation) {
        stamp();
        if (document.getElementById('banner').className !== 'note') LK.banner(null);
      }
    } catch (e) {
      if (g === generation && session) LK.banner(`${e.code || ''} ${e.message}`.trim());
    } finally {
      busy = false;
    }
  }
  LK.poll = poll;

  function route() {
    generation++;
    busy = false;
    LK.banner(null);
    const main = document.getElementById('main');
    const [path, qs] = (location.hash.replace(/^#\/?/, '') || '').split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(qs || '');
    if (!session) {
      view = signinView(main);
      return;
    }
    document.getElementById('who').textContent = `${session.name} (${session.role}, ${session.project})`;
    document.getElementById('signout').hidden = false;
    if (parts[0] === 'r' && parts.length === 3) view = registryView(main, parts[1], parts[2], params);
    else if (parts[0] === 'd' && parts.length === 4) view = LK.deviceView(main, parts[1], parts[2], parts[3]);
    else if (parts[0] === 'signin' || parts.length === 0) {
      if (parts[0] === 'signin') history.replaceState(null, '', '#/');
      view = overviewView(main);
    } else {
      replace(main, h('h1', {}, 'No such page'), h('p', {}, h('a', {href: '#/'}, 'To the fleet')));
      view = null;
    }
    poll();
  }
  LK.FILTERS = FILTERS;

  async function start() {
    document.getElementById('signout').addEventListener('click', signout);
    try {
      session = await LK.api('GET', 'api/session');
    } catch (e) {
      session = null;
    }
    window.addEventListener('hashchange', route);
    route();
    setInterval(() => {
      if (!document.hidden) poll();
    }, POLL_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) poll();
    });
  }

  document.addEventListener('DOMContentLoaded', start);
})();
