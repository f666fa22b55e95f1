// PM2 process file for ecigdis-ws, for hosts that already run the Node services under PM2.
//
//   pm2 start deploy/pm2/ecosystem.config.js     # from anywhere; paths are relative to this file
//   pm2 logs ecigdis-ws | pm2 restart ecigdis-ws | pm2 save && pm2 startup
//
// The server's settings come from the environment `pm2 start` runs in (and from a .env
// file in the working directory, which the server reads itself): export JWT_SECRET,
// DATABASE_URL, ... first, or keep them in .env. After changing them, apply with
// `pm2 restart ecigdis-ws --update-env`.
//
// Overridable here, also from the environment:
//   ECIGDIS_WS_BIN      the console script (default: <repo>/.venv/bin/ecigdis-ws)
//   ECIGDIS_WS_CWD      working directory (default: the repo root, so the default
//                       DATABASE_URL sqlite:///./data/ecigdis-ws.db is <repo>/data/)
//   ECIGDIS_WS_LOG_DIR  where the out and error logs go (default: <repo>/logs)
//
// One process: the server is asyncio, not a Node script, so PM2's cluster mode does not
// apply. For several nodes, copy the app entry with its own name, `--port` in args and
// a SERVER_ID, and see DEPLOYMENT_GUIDE.md (Redis, sticky sessions).
'use strict';

const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const logDir = process.env.ECIGDIS_WS_LOG_DIR || path.join(root, 'logs');
// The server drains events in flight for up to SHUTDOWN_TIMEOUT_MS after SIGINT or
// SIGTERM; PM2 must wait longer than that before it sends SIGKILL.
const shutdownTimeoutMs = Number(process.env.SHUTDOWN_TIMEOUT_MS) || 10000;

module.exports = {
  apps: [
    {
      name: 'ecigdis-ws',
      script: process.env.ECIGDIS_WS_BIN || path.join(root, '.venv', 'bin', 'ecigdis-ws'),
      args: 'serve',
      // The venv's console script is executed directly, not run by node.
      interpreter: 'none',
      cwd: process.env.ECIGDIS_WS_CWD || root,
      exec_mode: 'fork',
      instances: 1,

      autorestart: true,
      // Ten starts in a row that die within min_uptime and PM2 gives up (status
      // "errored"): a bad setting exits 2 at once, and restarting will not fix it.
      max_restarts: 10,
      min_uptime: '10s',
      restart_delay: 2000,

      // PM2 stops an app with SIGINT (PM2 has no per-app setting for it, only the
      // daemon's PM2_KILL_SIGNAL); the server handles SIGINT exactly like SIGTERM.
      kill_timeout: shutdownTimeoutMs + 5000,

      // The server logs to stderr; stdout stays nearly empty.
      out_file: path.join(logDir, 'ecigdis-ws.out.log'),
      error_file: path.join(logDir, 'ecigdis-ws.error.log'),
      // Exactly these file names (PM2 would otherwise add the process id to them).
      merge_logs: true,
      // The server's log lines carry their own timestamps (JSON lines in production).
      time: false,

      env: {
        NODE_ENV: process.env.NODE_ENV || 'production',
        PYTHONUNBUFFERED: '1',
      },
    },
  ],
};
