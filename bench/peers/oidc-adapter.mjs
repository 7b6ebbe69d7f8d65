// A PostgreSQL adapter for oidc-provider, as its docs ask of a production deployment (the built-in
// memory adapter is for development only): one table of payloads keyed by (model, id), with the
// secondary keys the provider looks things up by (grant, user code, session uid) and an expiry.
// Fixed SQL through a pg Pool. Expired rows are never returned; a real deployment would also sweep them.
export const SCHEMA = `
  create table oidc_payloads (
    model text not null,
    id text not null,
    payload jsonb not null,
    grant_id text,
    user_code text,
    uid text,
    expires_at timestamptz,
    consumed_at timestamptz,
    primary key (model, id)
  );
  create index oidc_payloads_grant on oidc_payloads (grant_id) where grant_id is not null;
  create index oidc_payloads_user_code on oidc_payloads (user_code) where user_code is not null;
  create index oidc_payloads_uid on oidc_payloads (uid) where uid is not null;
`;

const LIVE = '(expires_at is null or expires_at > now())';
const COLUMNS = `payload, floor(extract(epoch from consumed_at))::int as consumed`;

function payloadOf(rows) {
  if (rows.length === 0) return undefined;
  const [{ payload, consumed }] = rows;
  return consumed === null ? payload : { ...payload, consumed };
}

/** `Adapter` for the provider's configuration: `adapter: postgresAdapter(pool)`. */
export function postgresAdapter(pool) {
  return class PostgresAdapter {
    constructor(model) {
      this.model = model;
    }

    async upsert(id, payload, expiresIn) {
      await pool.query(
        `insert into oidc_payloads (model, id, payload, grant_id, user_code, uid, expires_at)
         values ($1, $2, $3, $4, $5, $6, case when $7::int is null then null else now() + make_interval(secs => $7::int) end)
         on conflict (model, id) do update set payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
           uid = excluded.uid, expires_at = excluded.expires_at`,
        [this.model, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null, expiresIn ?? null],
      );
    }

    async find(id) {
      return payloadOf((await pool.query(`select ${COLUMNS} from oidc_payloads where model = $1 and id = $2 and ${LIVE}`, [this.model, id])).rows);
    }

    async findByUserCode(userCode) {
      return payloadOf((await pool.query(`select ${COLUMNS} from oidc_payloads where model = $1 and user_code = $2 and ${LIVE}`, [this.model, userCode])).rows);
    }

    async findByUid(uid) {
      return payloadOf((await pool.query(`select ${COLUMNS} from oidc_payloads where model = $1 and uid = $2 and ${LIVE}`, [this.model, uid])).rows);
    }

    async consume(id) {
      await pool.query('update oidc_payloads set consumed_at = now() where model = $1 and id = $2', [this.model, id]);
    }

    async destroy(id) {
      await pool.query('delete from oidc_payloads where model = $1 and id = $2', [this.model, id]);
    }

    async revokeByGrantId(grantId) {
      await pool.query('delete from oidc_payloads where grant_id = $1', [grantId]);
    }
  };
}
