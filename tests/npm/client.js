#!/usr/bin/env node
/*
 * client.js — Google's own Node.js client for Cloud IoT Core
 * (@google-cloud/iot, the REST "fallback" transport) against latchkeyd, the
 * way docs/daemon.md tells users to construct it:
 *
 *   node client.js --port PORT --key-file KEY.json --project P [--endpoint 127.0.0.1]
 *                  [--location us-central1] [--registry R] [--es256-pem FILE]
 *
 * with the test CA in NODE_EXTRA_CA_CERTS (that is all the TLS set-up a user
 * needs). It runs every admin call a provisioning script makes, in order, and
 * prints one JSON report on standard output: {"steps": {NAME: {...}},
 * "requests": [...], "ok": bool}. Each step records what the library
 * returned (or the error's code, details and HTTP status); "requests" is
 * what the library put on the wire (method, path and query, headers, body;
 * the bearer token decoded to its JWT header and claims, never its
 * signature) so that tests/integration/test_api_npm.py can check both. A
 * step that throws unexpectedly is recorded and the run goes on, so one
 * report shows everything that failed. Exit 0 when the report was printed.
 */
'use strict';

const fs = require('fs');
const https = require('https');
const http = require('http');

function parseArgs(argv) {
  const a = {endpoint: '127.0.0.1', location: 'us-central1', registry: 'npm-registry', protocol: 'https'};
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (!k.startsWith('--') || v === undefined) throw new Error(`usage: bad argument ${k}`);
    a[k.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
  }
  for (const need of ['port', 'keyFile', 'project', 'es256Pem']) {
    if (!a[need]) throw new Error(`usage: --${need.replace(/[A-Z]/g, c => '-' + c.toLowerCase())} is required`);
  }
  a.port = Number(a.port);
  return a;
}

/* ---- what goes on the wire ---- */

const requests = [];

function b64urlJson(s) {
  try {
    return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch (e) {
    return null;
  }
}

// The Authorization header as something safe to print: an access token by
// its kind only, a JWT by its header and claims (the signature dropped).
function describeAuth(value) {
  if (value === undefined) return null;
  const m = /^Bearer (.*)$/i.exec(String(value));
  if (!m) return {scheme: 'other'};
  const parts = m[1].split('.');
  if (parts.length === 3) return {scheme: 'Bearer', jwt: {header: b64urlJson(parts[0]), claims: b64urlJson(parts[1])}};
  return {scheme: 'Bearer', opaque: m[1].startsWith('lkat_') ? 'latchkeyd access token' : 'other'};
}

// node-fetch (which gaxios uses in Node) calls https.request(url, options)
// or https.request(options); wrap both modules' request to see each request.
function trace(mod, scheme) {
  const orig = mod.request;
  mod.request = function (...args) {
    const req = orig.apply(this, args);
    const entry = {method: req.method, scheme, path: req.path, headers: {}, body: ''};
    for (const [k, v] of Object.entries(req.getHeaders())) {
      entry.headers[k] = k === 'authorization' ? describeAuth(v) : v;
    }
    const write = req.write;
    const end = req.end;
    const chunks = [];
    req.write = function (chunk, ...rest) {
      if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
      return write.call(this, chunk, ...rest);
    };
    req.end = function (chunk, ...rest) {
      if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
      const body = Buffer.concat(chunks).toString('utf8');
      if (entry.path === '/token' || /assertion=/.test(body)) entry.body = '(token grant form)';
      else entry.body = body;
      return end.call(this, chunk, ...rest);
    };
    req.on('response', res => {
      entry.status = res.statusCode;
    });
    requests.push(entry);
    return req;
  };
}
trace(https, 'https');
trace(http, 'http');

/* ---- the calls ---- */

// What a failed call gave the caller. With @google-cloud/iot 5.2.1 (google-gax
// 5.0.8, gaxios 7) a REST error is gaxios' error, not gax's GoogleError:
// e.code and e.status are the HTTP status and e.message the response body
// (Google's {"error": {code, message, status}}; e.response.data is unset,
// gax reads responses as streams), the canonical status only inside it
// (fixed upstream in google-gax 6, which iot 5.x does not take). Record both.
function errInfo(e) {
  let body = e.response && e.response.data !== undefined ? e.response.data : undefined;
  const bodyFrom = body === undefined ? 'message' : `response.data (${typeof body})`;
  if (body === undefined) {
    try {
      body = JSON.parse(e.message);
    } catch (_) {
      body = null;
    }
  }
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch (_) {
      body = null;
    }
  }
  const err = body && body.error ? body.error : {};
  return {
    error: true,
    kind: e.constructor && e.constructor.name,
    bodyFrom,
    code: e.code === undefined ? null : e.code,
    httpStatus: e.status !== undefined ? e.status : e.response && e.response.status !== undefined ? e.response.status : null,
    rpcStatus: err.status !== undefined ? err.status : null,
    rpcMessage: err.message !== undefined ? err.message : null,
    message: String(e.message || e).slice(0, 500),
  };
}

async function main() {
  const args = parseArgs(process.argv);
  // Loaded after the tracer, so that node-fetch binds the wrapped request.
  const iot = require('@google-cloud/iot');
  const es256Pem = fs.readFileSync(args.es256Pem, 'utf8');

  // Exactly as docs/daemon.md shows users.
  const client = new iot.v1.DeviceManagerClient({
    fallback: true,
    apiEndpoint: args.endpoint,
    port: args.port,
    protocol: args.protocol,
    keyFilename: args.keyFile,
  });

  const P = args.project;
  const L = args.location;
  const R = args.registry;
  const parent = client.locationPath(P, L);
  const regName = client.registryPath(P, L, R);
  const devName = id => client.devicePath(P, L, R, id);
  const steps = {};
  let ok = true;

  async function step(name, fn, expectError) {
    const first = requests.length;
    try {
      const out = await fn();
      steps[name] = {ok: !expectError, result: out};
      if (expectError) ok = false;
    } catch (e) {
      const info = errInfo(e);
      steps[name] = {ok: !!expectError, ...info};
      if (!expectError) {
        ok = false;
        info.stack = String(e.stack || '').split('\n').slice(0, 4).join(' | ');
      }
    }
    steps[name].requests = requests.length - first;
  }

  const plain = m => JSON.parse(JSON.stringify(m, (k, v) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)));

  await step('createDeviceRegistry', async () => {
    const [r] = await client.createDeviceRegistry({
      parent,
      deviceRegistry: {
        id: R,
        mqttConfig: {mqttEnabledState: 'MQTT_ENABLED'},
        httpConfig: {httpEnabledState: 'HTTP_DISABLED'},
        logLevel: 'INFO',
      },
    });
    return plain(r);
  });

  await step('getDeviceRegistry', async () => plain((await client.getDeviceRegistry({name: regName}))[0]));

  await step('listDeviceRegistries', async () => {
    const [regs] = await client.listDeviceRegistries({parent});
    return {ids: regs.map(r => r.id)};
  });

  await step('createDevice', async () => {
    const [d] = await client.createDevice({
      parent: regName,
      device: {
        id: 'npm-device',
        credentials: [{publicKey: {format: 'ES256_PEM', key: es256Pem}}],
        metadata: {owner: 'npm', site: 'lab'},
        logLevel: 'ERROR',
      },
    });
    return plain(d);
  });

  await step('getDevice', async () => plain((await client.getDevice({name: devName('npm-device')}))[0]));

  // More devices, so that a small pageSize needs several pages.
  const extra = ['npm-a1', 'npm-a2', 'npm-a3', 'npm-a4', 'npm-a5', 'npm-a6'];
  await step('createMoreDevices', async () => {
    for (const id of extra) await client.createDevice({parent: regName, device: {id}});
    return {created: extra.length};
  });

  await step('listDevices', async () => {
    // Autopaginated: the library follows nextPageToken itself.
    const [devs] = await client.listDevices({parent: regName, pageSize: 2, fieldMask: {paths: ['blocked', 'metadata']}});
    return {ids: devs.map(d => d.id), numIds: devs.map(d => String(d.numId)), metadata: devs.map(d => d.metadata)};
  });

  await step('updateDevice', async () => {
    const [d] = await client.updateDevice({
      device: {name: devName('npm-device'), blocked: true, metadata: {owner: 'npm', site: 'field'}},
      updateMask: {paths: ['blocked', 'metadata']},
    });
    return plain(d);
  });

  await step('modifyCloudToDeviceConfig', async () => {
    const [c] = await client.modifyCloudToDeviceConfig({
      name: devName('npm-device'),
      versionToUpdate: 1,
      binaryData: Buffer.from('{"fan":"on"}'),
    });
    return plain(c);
  });

  await step('modifyCloudToDeviceConfigStale', async () => {
    const [c] = await client.modifyCloudToDeviceConfig({
      name: devName('npm-device'),
      versionToUpdate: 1,
      binaryData: Buffer.from('{"fan":"off"}'),
    });
    return plain(c);
  }, true);

  await step('listDeviceConfigVersions', async () => {
    const [r] = await client.listDeviceConfigVersions({name: devName('npm-device'), numVersions: 10});
    return plain(r);
  });

  await step('listDeviceStates', async () => {
    const [r] = await client.listDeviceStates({name: devName('npm-device'), numStates: 10});
    return plain(r);
  });

  await step('sendCommandToDevice', async () => {
    const [r] = await client.sendCommandToDevice({name: devName('npm-a2'), binaryData: Buffer.from('reboot'), subfolder: 'ops'});
    return plain(r);
  }, true);

  await step('createGateway', async () => {
    const [d] = await client.createDevice({
      parent: regName,
      device: {
        id: 'npm-gateway',
        credentials: [{publicKey: {format: 'ES256_PEM', key: es256Pem}}],
        gatewayConfig: {gatewayType: 'GATEWAY', gatewayAuthMethod: 'ASSOCIATION_ONLY'},
      },
    });
    return plain(d);
  });

  await step('bindDeviceToGateway', async () => {
    const [r] = await client.bindDeviceToGateway({parent: regName, gatewayId: 'npm-gateway', deviceId: 'npm-a1'});
    return plain(r);
  });

  await step('listGatewayDevices', async () => {
    const [devs] = await client.listDevices({parent: regName, gatewayListOptions: {associationsGatewayId: 'npm-gateway'}});
    return {ids: devs.map(d => d.id)};
  });

  await step('unbindDeviceFromGateway', async () => {
    const [r] = await client.unbindDeviceFromGateway({parent: regName, gatewayId: 'npm-gateway', deviceId: 'npm-a1'});
    return plain(r);
  });

  await step('getDeviceMissing', async () => plain((await client.getDevice({name: devName('no-such-device')}))[0]), true);

  await step('deleteDevice', async () => {
    for (const id of ['npm-device', 'npm-gateway', ...extra]) await client.deleteDevice({name: devName(id)});
    return {};
  });

  await step('getDeletedDevice', async () => plain((await client.getDevice({name: devName('npm-device')}))[0]), true);

  await step('deleteDeviceRegistry', async () => {
    await client.deleteDeviceRegistry({name: regName});
    return {};
  });

  await step('listDeviceRegistriesAfter', async () => {
    const [regs] = await client.listDeviceRegistries({parent});
    return {ids: regs.map(r => r.id)};
  });

  await client.close();
  process.stdout.write(JSON.stringify({ok, steps, requests}, null, 1) + '\n');
}

main().catch(e => {
  process.stderr.write(`client.js: ${e.stack || e}\n`);
  process.exit(2);
});
