// The bound for plain request handling: a bare Express 5 hello-world, run with the same number of
// processes as Tessera (WEB_CONCURRENCY) so that the two are compared like for like.
import cluster from 'node:cluster';
import express from 'express';

const workers = Number(process.env.WEB_CONCURRENCY ?? '1');
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) console.log('ready');
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const app = express();
  app.disable('x-powered-by');
  app.get('/', (_req, res) => {
    res.json({ hello: 'world' });
  });
  const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
    if (workers <= 1) console.log('ready');
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
