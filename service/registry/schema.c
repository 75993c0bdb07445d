/*
 * schema.c — the SQLite registry's schema (see schema.h).
 *
 * Tables (version 1):
 *   meta                 key/value; 'schema_version' is the schema version.
 *   registries           one row per registry; UNIQUE(project, location,
 *                        registry_id); mqtt/http hold lk_reg_state values.
 *   registry_certs       CA certificates (PEM), in the order added.
 *   devices              num_id INTEGER PRIMARY KEY AUTOINCREMENT, so a
 *                        deleted device's num_id is never given again;
 *                        UNIQUE(registry, device_id); the latest config
 *                        version and the activity times live in the row, so
 *                        authentication and conflict checks read one row.
 *   device_credentials   up to 3 per device, (num_id, pos) clustered
 *                        (WITHOUT ROWID): the auth lookup reads them in order
 *                        from one b-tree range.
 *   device_metadata      key -> value (value is a blob: the text's bytes).
 *   device_configs       the newest 10 versions per device.
 *   device_states        the newest 10 state reports per device.
 *   changes              the change feed: seq AUTOINCREMENT (never reused),
 *                        kind, num_id, time; the newest 100,000 are kept.
 *
 * Version 2 adds:
 *   commands             sendCommandToDevice: id AUTOINCREMENT (a sender
 *                        polls it by id, so it is never reused), the
 *                        device, subfolder (NULL = none), data, created,
 *                        status (lk_reg_command_status: 0 pending) and
 *                        decided (0 while pending). Partial indexes: the
 *                        pending ones in id order (what a broker reads at
 *                        start), the decided ones by time (pruning).
 *   backends             backend applications: name PRIMARY KEY (WITHOUT
 *                        ROWID: the broker's lookup reads one b-tree),
 *                        project, SHA-256 of the secret (32 bytes), created.
 *
 * Version 3 adds IoT Core's settings that are stored before anything acts
 * on them (the import of an IoT Core export keeps them):
 *   devices.log_level, gateway_type, gateway_auth_method (the enums'
 *                        numbers, 0 = unspecified),
 *   devices.last_accessed_gateway_id (NULL = none) and
 *                        last_accessed_gateway_time (0 = never),
 *   registries.log_level.
 *
 * Version 4 adds, for latchkeyd (the REST API):
 *   gateway_bindings     bindDeviceToGateway: (gateway num_id, device num_id)
 *                        pairs, both devices of the same registry, cascading
 *                        away with either device; indexed both ways (a
 *                        gateway's devices, a device's gateways).
 *   service_accounts     who may call the API: email PRIMARY KEY
 *                        (NAME@PROJECT.iam.latchkey), project, name, role
 *                        (lk_reg_sa_role), created; UNIQUE(project, name).
 *   service_account_keys the accounts' public keys (PEM; the private key is
 *                        only ever in the key file given to the caller),
 *                        key_id PRIMARY KEY (the key file's private_key_id,
 *                        the JWT's kid), disabled, created.
 *
 * Version 5 adds, for latchkeyd's HTTP device bridge:
 *   bridges              latchkeyd's broker identity: name PRIMARY KEY
 *                        (WITHOUT ROWID: the broker's CONNECT reads one
 *                        b-tree), SHA-256 of the secret latchkeyd made at
 *                        its start (32 bytes), updated. Replaced at each
 *                        start, not in the change feed.
 *
 * Version 6 adds, for delivery to applications (issue 15):
 *   devices.presence, presence_time, presence_detail
 *                        the broker's record of whether the device is
 *                        connected (lk_reg_presence: 0 never), since when,
 *                        and the address or the reason (NULL = none); a
 *                        partial index over the recorded ones (the broker's
 *                        start reads only those).
 *   presence_tombstones  a deleted device that had a presence record: its
 *                        num_id PRIMARY KEY and path, until the broker has
 *                        cleared its retained presence message.
 *   subscriptions        push subscriptions: (project, name) PRIMARY KEY
 *                        (WITHOUT ROWID), topic, endpoint, authentication,
 *                        retry, dead-letter and retention settings; indexed
 *                        by (project, topic) (a topic's subscriptions).
 *
 * Version 7 adds, for provisioning (issue 17, docs/provisioning.md):
 *   registries.jit_enabled, jit_max (0 = LK_REG_JIT_MAX_DEFAULT) and
 *                        jit_registered (devices JIT ever registered here;
 *                        never decremented, so deleting does not refill it),
 *   registry_signers     the manifest signers' public keys (PEM SPKI),
 *                        label, SHA-256 of the DER SPKI, created; UNIQUE by
 *                        label and by fingerprint within a registry,
 *   registry_crls        CRLs (PEM) with their issuer's name (RFC 2253),
 *                        the SHA-256 of the issuer's DER SPKI (UNIQUE per
 *                        registry: one CRL per issuer key, a newer one
 *                        replaces it), thisUpdate, nextUpdate (0 = none),
 *                        count of entries, and the issuer's chain (PEM, NULL
 *                        = issued by a registry CA) that proved the CRL,
 *   jit_certs            the certificates that registered a device just in
 *                        time: (registry, SHA-256 of the certificate's DER)
 *                        PRIMARY KEY, device id, num_id, registered. No
 *                        reference to devices: a row outlives its device,
 *                        so one certificate registers at most one device,
 *   devices.last_key, last_key_time, jit
 *                        the SHA-256 of the SPKI of the key the device last
 *                        connected with (NULL = never) and when; 1 when JIT
 *                        registered it.
 *
 * Version 8 adds, for the console (issue 18, docs/console.md):
 *   operators            people who sign in: name PRIMARY KEY (WITHOUT
 *                        ROWID), project, role (lk_reg_sa_role), password
 *                        (the scrypt record "scrypt$LN$R$P$SALT$HASH", its
 *                        parameters with it), disabled, created. Failed
 *                        sign-ins are counted in latchkeyd's memory, not
 *                        here (a refusal writes nothing).
 *   audit                who changed what: id AUTOINCREMENT (a page
 *                        token, never reused), time, actor, via, action,
 *                        resource, project ('' = none), detail, outcome;
 *                        indexed by (project, id) and by time (pruning,
 *                        --since). The newest 1,000,000 rows younger than
 *                        400 days are kept.
 * Version 9 (LK_REG_SCHEMA_CONSOLE) adds, for the console's device search and fleet counts (issue 18,
 * docs/registry.md "Finding devices at scale"), indexes only:
 *   devices_by_presence  (registry, presence, device_id): a presence
 *                        filter's page is a walk in id order, and the
 *                        overview counts each presence by index ranges,
 *   devices_blocked      (registry, device_id) WHERE blocked <> 0,
 *   devices_gateways     (registry, device_id) WHERE gateway_type = 1
 *                        (GATEWAY): small partial indexes, in id order,
 *   devices_by_activity  (registry, max(last_heartbeat, last_event,
 *                        last_state, created)): "silent since", the
 *                        expression lk_reg_console.h defines,
 *   device_credentials_by_expiry (expires) WHERE expires <> 0.
 *
 * Every child table references its parent with ON DELETE CASCADE (the
 * connection sets foreign_keys=ON), and every foreign key is the first
 * column of an index, so cascades and per-device reads are index ranges.
 * Tables are STRICT (SQLite 3.37+; Debian 12 has 3.40): a wrong type is an
 * error, not a silent conversion.
 *
 * A new version appends a migration; existing ones are never edited.
 */
#include "schema.h"

const char *const lk_reg_sqlite_migrations[LK_REG_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE meta("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value ANY"
    ") STRICT, WITHOUT ROWID;"

    "CREATE TABLE registries("
    "  id INTEGER PRIMARY KEY,"
    "  project TEXT NOT NULL,"
    "  location TEXT NOT NULL,"
    "  registry_id TEXT NOT NULL,"
    "  mqtt INTEGER NOT NULL,"
    "  http INTEGER NOT NULL,"
    "  event_notification_json TEXT,"
    "  state_notification_json TEXT,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(project, location, registry_id)"
    ") STRICT;"

    "CREATE TABLE registry_certs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  registry INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,"
    "  pem TEXT NOT NULL"
    ") STRICT;"
    "CREATE INDEX registry_certs_by_registry ON registry_certs(registry, id);"

    "CREATE TABLE devices("
    "  num_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  registry INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,"
    "  device_id TEXT NOT NULL,"
    "  blocked INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  config_version INTEGER NOT NULL DEFAULT 1,"
    "  last_heartbeat INTEGER NOT NULL DEFAULT 0,"
    "  last_event INTEGER NOT NULL DEFAULT 0,"
    "  last_state INTEGER NOT NULL DEFAULT 0,"
    /* last_config_ack and device_configs.device_ack_time: nothing writes
     * them any more (the broker cannot see PUBACKs, docs/plugin.md); they
     * stay because existing databases have them, and read as 0. */
    "  last_config_ack INTEGER NOT NULL DEFAULT 0,"
    "  last_config_send INTEGER NOT NULL DEFAULT 0,"
    "  last_error INTEGER NOT NULL DEFAULT 0,"
    "  last_error_status TEXT,"
    "  UNIQUE(registry, device_id)"
    ") STRICT;"

    "CREATE TABLE device_credentials("
    "  num_id INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  pos INTEGER NOT NULL,"
    "  format INTEGER NOT NULL,"
    "  pem TEXT NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  PRIMARY KEY(num_id, pos)"
    ") STRICT, WITHOUT ROWID;"

    "CREATE TABLE device_metadata("
    "  id INTEGER PRIMARY KEY,"
    "  num_id INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value BLOB NOT NULL,"
    "  UNIQUE(num_id, key)"
    ") STRICT;"

    "CREATE TABLE device_configs("
    "  id INTEGER PRIMARY KEY,"
    "  num_id INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  version INTEGER NOT NULL,"
    "  cloud_update_time INTEGER NOT NULL,"
    "  device_ack_time INTEGER NOT NULL DEFAULT 0,"
    "  data BLOB NOT NULL,"
    "  UNIQUE(num_id, version)"
    ") STRICT;"

    "CREATE TABLE device_states("
    "  id INTEGER PRIMARY KEY,"
    "  num_id INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  update_time INTEGER NOT NULL,"
    "  data BLOB NOT NULL"
    ") STRICT;"
    "CREATE INDEX device_states_by_device ON device_states(num_id, id);"

    "CREATE TABLE changes("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind INTEGER NOT NULL,"
    "  num_id INTEGER NOT NULL,"
    "  time INTEGER NOT NULL"
    ") STRICT;",

    /* 1 -> 2: commands and backend applications */
    "CREATE TABLE commands("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  num_id INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  subfolder TEXT,"
    "  data BLOB NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  status INTEGER NOT NULL DEFAULT 0,"
    "  decided INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "CREATE INDEX commands_by_device ON commands(num_id);"
    "CREATE INDEX commands_pending ON commands(id) WHERE status = 0;"
    "CREATE INDEX commands_decided ON commands(decided) WHERE status <> 0;"

    "CREATE TABLE backends("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  project TEXT NOT NULL,"
    "  secret_sha256 BLOB NOT NULL CHECK(length(secret_sha256) = 32),"
    "  created INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX backends_by_project ON backends(project, name);",

    /* 2 -> 3: log levels and gateway settings */
    "ALTER TABLE devices ADD COLUMN log_level INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN gateway_type INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN gateway_auth_method INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN last_accessed_gateway_id TEXT;"
    "ALTER TABLE devices ADD COLUMN last_accessed_gateway_time INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE registries ADD COLUMN log_level INTEGER NOT NULL DEFAULT 0;",

    /* 3 -> 4: gateway bindings and service accounts (latchkeyd) */
    "CREATE TABLE gateway_bindings("
    "  gateway INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  device INTEGER NOT NULL REFERENCES devices(num_id) ON DELETE CASCADE,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY(gateway, device)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX gateway_bindings_by_device ON gateway_bindings(device, gateway);"

    "CREATE TABLE service_accounts("
    "  email TEXT PRIMARY KEY NOT NULL,"
    "  project TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  role INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(project, name)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE service_account_keys("
    "  key_id TEXT PRIMARY KEY NOT NULL,"
    "  email TEXT NOT NULL REFERENCES service_accounts(email) ON DELETE CASCADE,"
    "  public_pem TEXT NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX service_account_keys_by_account ON service_account_keys(email, key_id);",

    /* 4 -> 5: latchkeyd's bridge identity in the broker */
    "CREATE TABLE bridges("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  secret_sha256 BLOB NOT NULL CHECK(length(secret_sha256) = 32),"
    "  updated INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;",

    /* 5 -> 6: presence, presence tombstones, push subscriptions */
    "ALTER TABLE devices ADD COLUMN presence INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN presence_time INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN presence_detail TEXT;"
    "CREATE INDEX devices_present ON devices(num_id) WHERE presence <> 0;"
    "CREATE TABLE presence_tombstones("
    "  num_id INTEGER PRIMARY KEY NOT NULL,"
    "  project TEXT NOT NULL,"
    "  location TEXT NOT NULL,"
    "  registry_id TEXT NOT NULL,"
    "  device_id TEXT NOT NULL,"
    "  deleted INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE subscriptions("
    "  project TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  push_endpoint TEXT NOT NULL,"
    "  auth INTEGER NOT NULL,"
    "  auth_header_name TEXT,"
    "  auth_header_value TEXT,"
    "  oidc_email TEXT,"
    "  oidc_audience TEXT,"
    "  min_backoff_ms INTEGER NOT NULL,"
    "  max_backoff_ms INTEGER NOT NULL,"
    "  ack_deadline_ms INTEGER NOT NULL,"
    "  dead_letter_topic TEXT,"
    "  max_delivery_attempts INTEGER NOT NULL,"
    "  retention_ms INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY(project, name)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX subscriptions_by_topic ON subscriptions(project, topic);",

    /* 6 -> 7: provisioning: manifest signers, CRLs, just-in-time registration, last key */
    "ALTER TABLE registries ADD COLUMN jit_enabled INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE registries ADD COLUMN jit_max INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE registries ADD COLUMN jit_registered INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN last_key BLOB CHECK(last_key IS NULL OR length(last_key) = 32);"
    "ALTER TABLE devices ADD COLUMN last_key_time INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN jit INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE registry_signers("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  registry INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,"
    "  label TEXT NOT NULL,"
    "  pem TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL CHECK(length(fingerprint) = 32),"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(registry, label),"
    "  UNIQUE(registry, fingerprint)"
    ") STRICT;"
    "CREATE TABLE registry_crls("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  registry INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,"
    "  issuer TEXT NOT NULL,"
    "  issuer_key BLOB NOT NULL CHECK(length(issuer_key) = 32),"
    "  this_update INTEGER NOT NULL,"
    "  next_update INTEGER NOT NULL,"
    "  nrevoked INTEGER NOT NULL,"
    "  pem TEXT NOT NULL,"
    "  issuer_chain TEXT,"
    "  UNIQUE(registry, issuer_key)"
    ") STRICT;"
    "CREATE TABLE jit_certs("
    "  registry INTEGER NOT NULL REFERENCES registries(id) ON DELETE CASCADE,"
    "  cert_sha256 BLOB NOT NULL CHECK(length(cert_sha256) = 32),"
    "  device_id TEXT NOT NULL,"
    "  num_id INTEGER NOT NULL,"
    "  registered INTEGER NOT NULL,"
    "  PRIMARY KEY(registry, cert_sha256)"
    ") STRICT, WITHOUT ROWID;",

    /* 7 -> 8: operators (the console's people) and the audit record */
    "CREATE TABLE operators("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  project TEXT NOT NULL,"
    "  role INTEGER NOT NULL,"
    "  password TEXT NOT NULL,"
    "  disabled INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE audit("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  via TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  resource TEXT NOT NULL,"
    "  project TEXT NOT NULL,"
    "  detail TEXT NOT NULL,"
    "  outcome TEXT NOT NULL"
    ") STRICT;"
    "CREATE INDEX audit_by_project ON audit(project, id);"
    "CREATE INDEX audit_by_time ON audit(time);",

    /* 8 -> 9 (LK_REG_SCHEMA_CONSOLE): the console's search and counts (indexes only) */
    "CREATE INDEX devices_by_presence ON devices(registry, presence, device_id);"
    "CREATE INDEX devices_blocked ON devices(registry, device_id) WHERE blocked <> 0;"
    "CREATE INDEX devices_gateways ON devices(registry, device_id) WHERE gateway_type = 1;"
    "CREATE INDEX devices_by_activity ON devices(registry, "
    "max(last_heartbeat, last_event, last_state, created));"
    "CREATE INDEX device_credentials_by_expiry ON device_credentials(expires) "
    "WHERE expires <> 0;",
#ifdef LK_TEST_SCHEMA_BUMP
    /* 9 -> 10: the package test's upgrade (schema.h) */
    "CREATE TABLE upgrade_probe(id INTEGER PRIMARY KEY) STRICT;",
#endif
};

_Static_assert(LK_REG_SCHEMA_CONSOLE >= 1 && LK_REG_SCHEMA_CONSOLE <= LK_REG_SCHEMA_VERSION,
               "the console's migration is one of the migrations");
