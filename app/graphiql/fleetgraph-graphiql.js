// FleetGraph's GraphiQL glue: mounts GraphiQL (installed from npm, served by FleetGraph) with
// a fetcher that sends queries and mutations over HTTP and subscriptions over graphql-ws.
//
// Why a fetcher of our own rather than GraphiQL's default:
// - WebSockets carry no Authorization header; FleetGraph reads the token from the
//   connection_init payload. So each distinct Authorization typed into the headers editor
//   gets its own socket (the previous one is closed), with the token in connectionParams.
// - GraphiQL fetches the schema once, when it mounts. A user who pastes a token afterwards
//   would see "Error fetching schema" until they re-fetched by hand; instead, a changed
//   Authorization header re-mounts the fetcher, which makes GraphiQL introspect again.
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var config = JSON.parse(document.getElementById("fleetgraph-config").textContent);

  function fail(message) {
    root.textContent = "";
    var p = document.createElement("p");
    p.id = "graphiql-status";
    p.textContent = message;
    root.appendChild(p);
  }

  if (!window.React || !window.ReactDOM || !window.GraphiQL || !window.graphqlWs) {
    fail("GraphiQL's assets are not installed on this server: run `make install` " +
         "(it installs them from the npm registry with npm ci).");
    return;
  }

  var httpUrl = new URL(config.endpoint, window.location.href).toString();
  var wsUrl = httpUrl.replace(/^http/, "ws");
  var httpFetcher = GraphiQL.createFetcher({ url: httpUrl });

  function headerValue(headers, name) {
    if (!headers) return "";
    for (var key in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, key) && key.toLowerCase() === name) {
        return String(headers[key]);
      }
    }
    return "";
  }

  function parseHeaders(text) {
    if (!text || !text.trim()) return {};
    try {
      var parsed = JSON.parse(text);
      return parsed && typeof parsed === "object" ? parsed : {};
    } catch (e) {
      return null; // half-typed JSON: keep what we have
    }
  }

  var socket = { auth: null, client: null };

  function wsClientFor(auth) {
    if (socket.client && socket.auth === auth) return socket.client;
    if (socket.client) socket.client.dispose();
    socket.auth = auth;
    socket.client = graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      keepAlive: 10000,
      connectionParams: auth ? { Authorization: auth } : {},
    });
    return socket.client;
  }

  function isSubscription(params, opts) {
    var doc = opts && opts.documentAST;
    if (doc && doc.definitions) {
      var operations = doc.definitions.filter(function (d) {
        return d.kind === "OperationDefinition";
      });
      var chosen = operations.filter(function (d) {
        return !params.operationName || (d.name && d.name.value === params.operationName);
      })[0] || operations[0];
      return !!chosen && chosen.operation === "subscription";
    }
    return /^\s*subscription\b/.test(params.query || "");
  }

  function closeReason(event) {
    if (event && typeof event.code === "number") {
      return "WebSocket closed (" + event.code + (event.reason ? ": " + event.reason : "") + ")";
    }
    if (Array.isArray(event)) return event.map(function (e) { return e.message; }).join("; ");
    return event instanceof Error ? event.message : String(event);
  }

  function subscribe(params, auth) {
    // An async iterable of results, which GraphiQL renders one after another.
    var client = wsClientFor(auth);
    var queue = [];
    var waiting = null;
    var done = false;
    function push(item) {
      if (waiting) { var w = waiting; waiting = null; w(item); } else { queue.push(item); }
    }
    var dispose = client.subscribe(
      { query: params.query, variables: params.variables, operationName: params.operationName },
      {
        next: function (value) { push({ value: value, done: false }); },
        error: function (event) {
          push({ value: { errors: [{ message: closeReason(event) }] }, done: false });
          push({ value: undefined, done: true });
        },
        complete: function () { push({ value: undefined, done: true }); },
      }
    );
    var iterator = {
      next: function () {
        if (done) return Promise.resolve({ value: undefined, done: true });
        if (queue.length) {
          var item = queue.shift();
          if (item.done) done = true;
          return Promise.resolve(item);
        }
        return new Promise(function (resolve) {
          waiting = function (item) { if (item.done) done = true; resolve(item); };
        });
      },
      return: function () {
        done = true;
        dispose();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
    iterator[Symbol.asyncIterator] = function () { return iterator; };
    return iterator;
  }

  function makeFetcher(generation) {
    var fetcher = function (params, opts) {
      if (isSubscription(params, opts)) {
        return subscribe(params, headerValue(opts && opts.headers, "authorization"));
      }
      return httpFetcher(params, opts);
    };
    fetcher.generation = generation;
    return fetcher;
  }

  var defaultQuery = [
    "# FleetGraph. Put your token in the Headers tab below:",
    '#   {"Authorization": "Bearer <token>"}',
    "# The schema and the docs load as soon as it is there.",
    "",
    "{",
    "  clusters(first: 10) {",
    "    edges { node { name provider status health { status reason } } }",
    "  }",
    "}",
    "",
  ].join("\n");

  var generation = 0;
  var currentAuth = null;
  var reactRoot = ReactDOM.createRoot(root);

  function render(fetcher) {
    reactRoot.render(React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      initialHeaders: config.initialHeaders || undefined,
      defaultEditorToolsVisibility: config.initialHeaders ? "headers" : undefined,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      onEditHeaders: onEditHeaders,
    }));
  }

  var pending = null;
  function onEditHeaders(text) {
    var parsed = parseHeaders(text);
    if (parsed === null) return;
    var auth = headerValue(parsed, "authorization");
    if (auth === currentAuth) return;
    clearTimeout(pending);
    pending = setTimeout(function () {
      currentAuth = auth;
      generation += 1;
      render(makeFetcher(generation));
    }, 250);
  }

  currentAuth = headerValue(parseHeaders(config.initialHeaders) || {}, "authorization");
  render(makeFetcher(generation));
})();
