// node-oidc-provider (OpenID Certified) with a Redis store: the peer issue 13
// compares privid's client_credentials grant and introspection with.
// Started by bench/run_all.py (--node-oidc), loaded by the same wrk script.
//
//   PORT=… WORKERS=2 REDIS_URL=redis://127.0.0.1:6379/1 CLIENTS_FILE=clients.json node server.js
//
// CLIENTS_FILE: [{"client_id": "…", "client_secret": "…"}, …], each a
// confidential client (client_secret_basic) allowed client_credentials.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';

import Redis from 'ioredis';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const workers = Number(process.env.WORKERS || 2);

if (cluster.isPrimary) {
  for (let n = 0; n < workers; n += 1) cluster.fork();
  cluster.on('exit', () => process.exit(1));
} else {
  const redis = new Redis(process.env.REDIS_URL);
  const prefix = `bench-oidc:${port}`;

  // The adapter interface node-oidc-provider asks of a store: one JSON value
  // per model and id, expiring with the token, and the index lookups it needs.
  class RedisAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${prefix}:${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const pipeline = redis.multi();
      const value = JSON.stringify(payload);
      if (expiresIn) pipeline.set(this.key(id), value, 'EX', expiresIn);
      else pipeline.set(this.key(id), value);
      if (payload.grantId) {
        const grant = `${prefix}:grant:${payload.grantId}`;
        pipeline.rpush(grant, this.key(id));
        if (expiresIn) pipeline.expire(grant, expiresIn);
      }
      if (payload.uid) pipeline.set(`${prefix}:uid:${payload.uid}`, id, ...(expiresIn ? ['EX', expiresIn] : []));
      if (payload.userCode) pipeline.set(`${prefix}:userCode:${payload.userCode}`, id, ...(expiresIn ? ['EX', expiresIn] : []));
      await pipeline.exec();
    }

    async find(id) {
      const value = await redis.get(this.key(id));
      return value ? JSON.parse(value) : undefined;
    }

    async findByUid(uid) {
      const id = await redis.get(`${prefix}:uid:${uid}`);
      return id ? this.find(id) : undefined;
    }

    async findByUserCode(userCode) {
      const id = await redis.get(`${prefix}:userCode:${userCode}`);
      return id ? this.find(id) : undefined;
    }

    async consume(id) {
      const payload = await this.find(id);
      if (!payload) return;
      payload.consumed = Math.floor(Date.now() / 1000);
      await redis.set(this.key(id), JSON.stringify(payload), 'KEEPTTL');
    }

    async destroy(id) {
      await redis.del(this.key(id));
    }

    async revokeByGrantId(grantId) {
      const grant = `${prefix}:grant:${grantId}`;
      const keys = await redis.lrange(grant, 0, -1);
      await redis.del(...keys, grant);
    }
  }

  const clients = JSON.parse(readFileSync(process.env.CLIENTS_FILE, 'utf8')).map((c) => ({
    ...c,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }));

  const provider = new Provider(`http://127.0.0.1:${port}`, {
    adapter: RedisAdapter,
    clients,
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      devInteractions: { enabled: false },
    },
  });
  provider.listen(port, '127.0.0.1');
}
