/**
 * A graphql-transport-ws peer that nobody at FleetGraph wrote: the reference npm `graphql-ws`
 * client (over the `ws` package, since Node 20 has no stable global WebSocket), driven by
 * tests/graph/test_graphql_ws_peer.py against the live server.
 *
 * Why: our own Python client (tests/graph/ws.py) once read binary frames without complaint
 * while every real client rejected them ("Message is missing the 'type' property"). Only a
 * client we did not write can tell us the server speaks the protocol the way others read it.
 *
 * Usage: `node graphql_ws_client.mjs` with, on stdin,
 *   line 1: one JSON object
 *     {"url": "ws://127.0.0.1:PORT/graphql", "token": "...",
 *      "subscriptions": {"<name>": {"query": "...", "variables": {...}}, ...},
 *      "keepAliveMs": 200, "timeoutMs": 30000}
 *     The token travels in stdin, not argv, so it never shows in a process listing.
 *   then command lines:
 *     complete <name>   end that subscription (graphql-ws sends `complete` to the server)
 *     end               end every subscription still open
 *     (end of stdin means `end`)
 *
 * All subscriptions share one socket (graphql-ws multiplexes; `lazy` opens it on the first
 * subscribe and closes it with 1000 after the last one ends). Nothing reconnects
 * (`retryAttempts: 0`): a rejected connection must be reported, not papered over.
 *
 * Output on stdout, one JSON object a line:
 *   {"connected": {"protocol": "graphql-transport-ws", "payload": ...}}
 *   {"sub": "<name>", "event": {...}}           each `next` payload, as graphql-ws delivered it
 *   {"pong": {"received": true}}                each pong (the `on.pong` listener)
 *   {"complete": "<name>"}                      the subscription's sink saw `complete`
 *   {"stray": {...}}                            a `next`/`error` for a subscription already
 *                                               completed (the test completes one only when
 *                                               nothing for it is in flight, so any is a bug)
 *   {"closed": {"code": N, "reason": "...", "wasClean": bool}}
 *   {"summary": {"opened", "connected", "pings", "pongs", "frames": {"text", "binary"},
 *                "strays", "closed"}}           last line, on every exit path
 * Exit 0 once every subscription completed and the socket closed with 1000. Any error (a
 * GraphQL error, a close the client did not ask for, a binary frame, a stray message, a bad
 * spec, the overall timeout) is one JSON line on stderr, {"error": {...}}, and exit 1
 * (2 for a bad spec or usage, 3 for the timeout).
 */

import { createInterface } from 'node:readline';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const err = (obj) => process.stderr.write(JSON.stringify({ error: obj }) + '\n');

const stats = {
  opened: 0, connected: 0, pings: 0, pongs: 0,
  frames: { text: 0, binary: 0 }, strays: [], closed: null,
};
let exiting = false;
let client;  // assigned once the spec is read; fail() copes with it still unset

function finish(code) {
  if (exiting) return;
  exiting = true;
  process.exitCode = code;
  // Exit once the summary is written out (stdin would otherwise keep the process alive).
  process.stdout.write(JSON.stringify({ summary: stats }) + '\n', () => process.exit(code));
}

function fail(code, detail) {
  if (exiting) return;
  err(detail);
  try { client?.terminate(); } catch { /* the socket may already be gone */ }
  finish(code);
}

function closeInfo(event) {
  return { code: event?.code, reason: String(event?.reason ?? ''), wasClean: Boolean(event?.wasClean) };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
const iterator = lines[Symbol.asyncIterator]();

let spec;
{
  const first = await iterator.next();
  if (first.done) {
    err({ message: 'no spec: the first stdin line must be the JSON spec' });
    process.exit(2);
  }
  try {
    spec = JSON.parse(first.value);
  } catch (e) {
    err({ message: `the spec is not JSON: ${e.message}` });
    process.exit(2);
  }
  const subs = spec.subscriptions;
  if (typeof spec.url !== 'string' || typeof spec.token !== 'string' ||
      !subs || typeof subs !== 'object' || Object.keys(subs).length === 0) {
    err({ message: 'the spec needs "url", "token" and at least one of "subscriptions"' });
    process.exit(2);
  }
}

const keepAliveMs = Number(spec.keepAliveMs ?? 200);
const timeoutMs = Number(spec.timeoutMs ?? 30000);
const deadline = setTimeout(() => fail(3, { message: `no clean end within ${timeoutMs} ms` }), timeoutMs);
deadline.unref();

// Subscription id = its name, so stray messages can be attributed from the raw message stream.
const idOf = new Map();
const unsubscribe = new Map();   // name -> the function graphql-ws returned
const open = new Set();          // names whose sink has not seen complete/error yet
const completedLocally = new Set();

client = createClient({
  url: spec.url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${spec.token}` },
  keepAlive: keepAliveMs,
  retryAttempts: 0,
  lazy: true,
  generateID: (payload) => idOf.get(payload),
  on: {
    opened: (socket) => {
      stats.opened += 1;
      // Count the frames themselves (graphql-ws only sees the decoded data), ahead of
      // graphql-ws's own handler so a binary frame is named as such before it fails parsing.
      socket.prependListener('message', (_data, isBinary) => {
        if (isBinary) {
          stats.frames.binary += 1;
          fail(1, { message: 'the server sent a binary frame; protocol messages must be text' });
        } else {
          stats.frames.text += 1;
        }
      });
    },
    connected: (socket, payload) => {
      stats.connected += 1;
      out({ connected: { protocol: socket.protocol, payload: payload ?? null } });
    },
    ping: (received) => { if (!received) stats.pings += 1; },
    pong: (received) => {
      if (received) {
        stats.pongs += 1;
        out({ pong: { received: true } });
      }
    },
    message: (message) => {
      if (message.id !== undefined && completedLocally.has(message.id) &&
          (message.type === 'next' || message.type === 'error')) {
        stats.strays.push(message);
        out({ stray: message });
      }
    },
    closed: (event) => {
      stats.closed = closeInfo(event);
      out({ closed: stats.closed });
      if (exiting) return;
      if (open.size === 0 && stats.closed.code === 1000) {
        if (stats.strays.length) {
          fail(1, { message: 'the server kept sending after complete', strays: stats.strays });
        } else {
          finish(0);
        }
      }
      // Otherwise the open subscriptions' sinks report the close as their error.
    },
    error: (e) => {
      if (!exiting) fail(1, { message: `socket error: ${e?.message ?? String(e)}` });
    },
  },
});

function complete(name) {
  const stop = unsubscribe.get(name);
  if (!stop) {
    fail(2, { message: `no subscription named ${JSON.stringify(name)}` });
    return;
  }
  completedLocally.add(name);
  stop();
}

for (const [name, { query, variables }] of Object.entries(spec.subscriptions)) {
  const payload = { query, variables: variables ?? {} };
  idOf.set(payload, name);
  open.add(name);
  unsubscribe.set(name, client.subscribe(payload, {
    next: (event) => out({ sub: name, event }),
    error: (e) => {
      open.delete(name);
      if (e && typeof e === 'object' && 'code' in e && 'reason' in e) {
        // A CloseEvent: the connection ended before the subscription did.
        fail(1, { sub: name, closed: closeInfo(e) });
      } else if (Array.isArray(e)) {
        fail(1, { sub: name, errors: e });  // GraphQL errors from an `error` message
      } else {
        fail(1, { sub: name, message: e?.message ?? String(e) });
      }
    },
    complete: () => {
      open.delete(name);
      out({ complete: name });
    },
  }));
}

for (;;) {
  const next = await iterator.next();
  const command = next.done ? 'end' : next.value.trim();
  if (command === '') continue;
  if (command === 'end') {
    for (const name of unsubscribe.keys()) if (!completedLocally.has(name)) complete(name);
    break;
  }
  const match = /^complete\s+(\S+)$/.exec(command);
  if (!match) {
    fail(2, { message: `unknown command ${JSON.stringify(command)}` });
    break;
  }
  complete(match[1]);
}
// Every subscription was told to end: the lazy client now closes the socket with 1000, and
// `closed` above exits. The deadline covers a server that never lets go.
