/*
 * device.js — the console's device page (docs/console.md, "The device"):
 * presence and activity times, credentials with their SHA-256 fingerprints
 * (computed here, as `latchkey devices credentials list` shows them), the
 * config history and a form to send a new version, the state history,
 * recent refusals, a command, block and unblock. Data from the REST API
 * (/v1/...) and the console's refusals endpoint; forms are built once and
 * only the data around them is redrawn on each poll.
 */
'use strict';
(function () {
  const LK = window.LK = window.LK || {};
  const h = (...a) => LK.h(...a);
  const FIELDS = ['credentials', 'lastHeartbeatTime', 'lastEventTime', 'lastStateTime', 'lastConfigAckTime',
                  'lastConfigSendTime', 'blocked', 'lastErrorTime', 'lastErrorStatus', 'config', 'state',
                  'logLevel', 'metadata', 'presence', 'gatewayConfig'];

  /* ---- bytes ---- */

  function b64bytes(s) {
    const bin = atob(String(s || '').replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(bin, c => c.charCodeAt(0));
  }

  function bytesB64(bytes) {
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  /* binaryData shown as text when it is UTF-8 without control characters, else as base64. */
  function payload(b64) {
    const bytes = b64bytes(b64);
    if (bytes.length === 0) return h('span', {class: 'muted'}, '(empty)');
    try {
      const t = new TextDecoder('utf-8', {fatal: true}).decode(bytes);
      if (!/[\u0000-\u0008\u000e-\u001f\u007f]/.test(t)) return h('code', {class: 'data'}, t);
    } catch (e) {
      /* not UTF-8 */
    }
    return h('code', {class: 'data'}, `base64 ${b64} (${bytes.length} bytes)`);
  }

  /* ---- fingerprints: SHA-256 of the DER SubjectPublicKeyInfo ---- */

  function tlv(b, p) {
    if (p + 2 > b.length) throw new Error('short DER');
    let len = b[p + 1], o = p + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 4) throw new Error('bad DER length');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[o++];
    }
    if (o + len > b.length) throw new Error('DER runs past its end');
    return {tag: b[p], start: p, body: o, end: o + len};
  }

  /* A certificate's SubjectPublicKeyInfo: tbsCertificate's 7th element (6th without [0] version). */
  function certSpki(der) {
    const tbs = tlv(der, tlv(der, 0).body);
    let p = tbs.body;
    const items = [];
    while (p < tbs.end && items.length < 7) {
      const e = tlv(der, p);
      items.push(e);
      p = e.end;
    }
    const k = (items[0] && items[0].tag === 0xa0 ? 1 : 0) + 5;
    if (!items[k]) throw new Error('no key in the certificate');
    return der.slice(items[k].start, items[k].end);
  }

  async function fingerprint(format, pem) {
    try {
      const der = b64bytes(String(pem).replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''));
      const spki = /X509/.test(format) ? certSpki(der) : der;
      const d = new Uint8Array(await crypto.subtle.digest('SHA-256', spki));
      return Array.from(d, b => b.toString(16).padStart(2, '0')).join('');
    } catch (e) {
      return `(cannot read the key: ${e.message})`;
    }
  }

  /* ---- the page ---- */

  LK.deviceView = function (main, loc, reg, id) {
    const rest = `/v1/${LK.regPath(loc, reg)}/devices/${encodeURIComponent(id)}`;
    const mayChange = LK.can('deviceController');
    const head = h('div', {id: 'device-head', class: 'device-head'});
    const times = h('dl', {id: 'device-times', class: 'times'});
    const creds = h('tbody', {id: 'credentials'});
    const configs = h('tbody', {id: 'config-history'});
    const states = h('tbody', {id: 'state-history'});
    const refusals = h('tbody', {id: 'refusals'});
    let device = null;
    let fpCache = new Map();

    // block / unblock
    const blockBtn = h('button', {id: 'block-toggle', type: 'button', disabled: !mayChange}, '…');
    const blockMsg = h('span', {id: 'block-msg', class: 'form-msg', role: 'status'});
    blockBtn.addEventListener('click', async () => {
      if (!device) return;
      const want = !device.blocked;
      blockBtn.disabled = true;
      try {
        await LK.api('PATCH', `${rest}?updateMask=blocked`, {blocked: want});
        LK.replace(blockMsg, want ? 'Blocked: its connection was closed and new ones are refused.' : 'Unblocked.');
        await LK.poll();
      } catch (e) {
        LK.replace(blockMsg, e.message);
      } finally {
        blockBtn.disabled = !mayChange;
      }
    });

    // config form
    const cfgData = h('textarea', {id: 'config-data', rows: 4, 'aria-label': 'new config', spellcheck: 'false'});
    const cfgEnc = h('select', {id: 'config-encoding', 'aria-label': 'encoding'},
      h('option', {value: 'text'}, 'text (UTF-8)'), h('option', {value: 'base64'}, 'base64'));
    const cfgBase = h('span', {id: 'config-base'});
    const cfgMsg = h('p', {id: 'config-msg', class: 'form-msg', role: 'status'});
    const cfgForm = h('form', {id: 'config-form', class: 'stack'}, cfgData,
      h('div', {class: 'row'}, cfgEnc, h('button', {id: 'config-send', type: 'submit', disabled: !mayChange},
                                         'Send new version'), cfgBase), cfgMsg);
    cfgForm.addEventListener('submit', async ev => {
      ev.preventDefault();
      if (!device) return;
      const version = device.config ? device.config.version : '0';
      let data;
      try {
        data = cfgEnc.value === 'base64' ? bytesB64(b64bytes(cfgData.value.trim()))
          : bytesB64(new TextEncoder().encode(cfgData.value));
      } catch (e) {
        LK.replace(cfgMsg, 'That is not base64.');
        return;
      }
      LK.replace(cfgMsg, 'Sending…');
      try {
        const c = await LK.api('POST', `${rest}:modifyCloudToDeviceConfig`,
                               {binaryData: data, versionToUpdate: version});
        LK.replace(cfgMsg, `Version ${c.version} stored and sent to the device if it is connected ` +
                   '(sent is not applied: see the note above).');
        cfgData.value = '';
        await LK.poll();
      } catch (e) {
        LK.replace(cfgMsg, e.code === 'FAILED_PRECONDITION'
          ? `Someone changed the config since version ${version} was shown; look at the history and send again.`
          : e.message);
        await LK.poll();
      }
    });

    // command form
    const cmdData = h('input', {id: 'command-data', 'aria-label': 'command', placeholder: 'command text'});
    const cmdSub = h('input', {id: 'command-subfolder', 'aria-label': 'subfolder', placeholder: 'subfolder (optional)'});
    const cmdMsg = h('p', {id: 'command-msg', class: 'form-msg', role: 'status'});
    const cmdForm = h('form', {id: 'command-form', class: 'stack'}, h('div', {class: 'row'}, cmdData, cmdSub,
      h('button', {id: 'command-send', type: 'submit', disabled: !mayChange}, 'Send command')), cmdMsg);
    cmdForm.addEventListener('submit', async ev => {
      ev.preventDefault();
      const body = {binaryData: bytesB64(new TextEncoder().encode(cmdData.value))};
      if (cmdSub.value.trim()) body.subfolder = cmdSub.value.trim();
      LK.replace(cmdMsg, 'Sending… (waits for the device to receive it)');
      try {
        await LK.api('POST', `${rest}:sendCommandToDevice`, body);
        LK.replace(cmdMsg, 'Delivered to the device.');
      } catch (e) {
        LK.replace(cmdMsg, e.message);
      }
    });

    const table = (cols, body, id) => h('table', {class: 'list', id},
      h('thead', {}, h('tr', {}, cols.map(c => h('th', {}, c)))), body);
    LK.replace(main,
      h('p', {class: 'crumbs'}, h('a', {href: '#/'}, 'Fleet'), ' › ',
        h('a', {href: `#/r/${encodeURIComponent(loc)}/${encodeURIComponent(reg)}`}, reg), ' › '),
      head,
      h('section', {class: 'card'}, h('h2', {}, 'Activity'), times,
        h('div', {class: 'row'}, blockBtn, blockMsg)),
      h('section', {class: 'card'}, h('h2', {}, 'Config'),
        h('p', {class: 'note', id: 'ack-note'}, h('strong', {}, 'Sent is not applied. '),
          'Mosquitto 2.0.11 does not tell the broker plugin when a device acknowledges a message, so latchkey ',
          'records when a config was sent to the device, never that the device received or applied it ',
          '(no "device acknowledged" time is shown). A device that must confirm a config reports it in its state.'),
        cfgForm, table(['Version', 'Stored', 'Data'], configs, 'config-table')),
      h('section', {class: 'card'}, h('h2', {}, 'Recent refusals'),
        h('p', {class: 'hint'}, 'Connects the broker refused for this device, newest first ',
          '(kept in bounded memory by the broker; cleared when it restarts).'),
        table(['Time', 'Reason', 'Detail'], refusals, 'refusals-table')),
      h('section', {class: 'card'}, h('h2', {}, 'State history'), table(['Reported', 'Data'], states, 'state-table')),
      h('section', {class: 'card'}, h('h2', {}, 'Send a command'), cmdForm),
      h('section', {class: 'card'}, h('h2', {}, 'Credentials'),
        table(['#', 'Format', 'Expires', 'SHA-256 fingerprint'], creds, 'credentials-table')));

    function drawHead(d) {
      const pr = d.presence || {};
      const presence = pr.online ? 'online' : pr.time ? 'offline' : 'never';
      const gw = d.gatewayConfig && d.gatewayConfig.gatewayType === 'GATEWAY';
      LK.replace(head, h('h1', {}, d.id, ' ', LK.presence(presence, d.blocked), gw ? h('span', {class: 'tag'}, 'gateway') : null),
        h('p', {class: 'muted'}, `numId ${d.numId}`,
          pr.online && pr.address ? ` · connected from ${pr.address}` : '',
          !pr.online && pr.reason ? ` · last disconnect: ${pr.reason}` : '',
          pr.time ? [' · since ', LK.when(pr.time)] : '', d.logLevel ? ` · log level ${d.logLevel}` : ''));
      const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
      const err = d.lastErrorStatus ? (d.lastErrorStatus.message || JSON.stringify(d.lastErrorStatus)) : '';
      LK.replace(times,
        row('Last heartbeat', LK.when(d.lastHeartbeatTime)), row('Last event', LK.when(d.lastEventTime)),
        row('Last state', LK.when(d.lastStateTime)),
        row('Last config sent', [LK.when(d.lastConfigSendTime),
                                 d.config ? ` (version ${d.config.version})` : '']),
        row('Last error', [LK.when(d.lastErrorTime), err ? h('small', {class: 'err'}, ` ${err}`) : null]),
        Object.entries(d.metadata || {}).map(([k, v]) => row(`metadata ${k}`, h('code', {class: 'data'}, v))));
      LK.replace(blockBtn, d.blocked ? 'Unblock' : 'Block');
      blockBtn.className = d.blocked ? '' : 'danger';
      LK.replace(cfgBase, d.config ? `replaces version ${d.config.version}` : 'the first version');
    }

    async function drawCreds(d) {
      const list = d.credentials || [];
      const rows = [];
      for (let i = 0; i < list.length; i++) {
        const c = list[i], pk = c.publicKey || {};
        const key = `${pk.format}|${pk.key}`;
        if (!fpCache.has(key)) fpCache.set(key, await fingerprint(pk.format || '', pk.key || ''));
        const exp = c.expirationTime && !c.expirationTime.startsWith('1970-01-01') ? c.expirationTime : null;
        const expired = exp && Date.parse(exp) < Date.now();
        rows.push(h('tr', {}, h('td', {'data-label': '#'}, String(i)), h('td', {'data-label': 'Format'}, pk.format || '?'),
          h('td', {'data-label': 'Expires', class: expired ? 'err' : ''}, exp ? [LK.when(exp), expired ? ' (expired)' : ''] : 'never'),
          h('td', {'data-label': 'SHA-256'}, h('code', {class: 'fp'}, fpCache.get(key)))));
      }
      LK.replace(creds, rows.length ? rows : h('tr', {}, h('td', {colspan: 4, class: 'empty'}, 'No credential.')));
    }

    async function refresh() {
      const [d, cv, st, rf] = await Promise.all([
        LK.api('GET', `${rest}?fieldMask=${FIELDS.join(',')}`),
        LK.api('GET', `${rest}/configVersions?numVersions=10`),
        LK.api('GET', `${rest}/states?numStates=10`),
        LK.api('GET', `api/${LK.regPath(loc, reg)}/devices/${encodeURIComponent(id)}/refusals`)]);
      device = d;
      drawHead(d);
      await drawCreds(d);
      const empty = (n, t) => h('tr', {}, h('td', {colspan: n, class: 'empty'}, t));
      const cfgs = cv.deviceConfigs || [];
      LK.replace(configs, cfgs.length ? cfgs.map(c => h('tr', {'data-version': c.version},
        h('td', {'data-label': 'Version'}, String(c.version)), h('td', {'data-label': 'Stored'}, LK.when(c.cloudUpdateTime)),
        h('td', {'data-label': 'Data'}, payload(c.binaryData)))) : empty(3, 'No config yet.'));
      const sts = st.deviceStates || [];
      LK.replace(states, sts.length ? sts.map(s => h('tr', {},
        h('td', {'data-label': 'Reported'}, LK.when(s.updateTime)), h('td', {'data-label': 'Data'}, payload(s.binaryData))))
        : empty(2, 'No state reported.'));
      const rfs = rf.refusals || [];
      LK.replace(refusals, rfs.length ? rfs.map(r => h('tr', {class: 'refusal'},
        h('td', {'data-label': 'Time'}, LK.when(r.time)), h('td', {'data-label': 'Reason'}, h('code', {}, r.reason || '?')),
        h('td', {'data-label': 'Detail'}, r.detail || ''))) : empty(3, 'No refusal recently.'));
    }
    return {refresh};
  };
})();
