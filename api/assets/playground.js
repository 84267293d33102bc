// Starts GraphiQL against this server: queries and mutations over POST /graphql,
// subscriptions over the graphql-transport-ws protocol at /graphql/ws. Headers typed in
// the "Headers" tab (e.g. {"Authorization": "Bearer <token>"}) go with every HTTP request
// and into the WebSocket's connection_init payload.
(function () {
  var loc = window.location;
  var wsUrl = (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/graphql/ws";
  var fetcher = GraphiQL.createFetcher({ url: loc.origin + "/graphql", subscriptionUrl: wsUrl });
  var defaultQuery = [
    "# Welcome to cartsource. Catalog reads need no token; for carts and orders run",
    "#   cartsource token --sub alice",
    "# and put {\"Authorization\": \"Bearer <token>\"} in the Headers tab below.",
    "",
    "query Catalog {",
    "  products(first: 10) {",
    "    nodes { sku name price { amount currencyCode } available }",
    "  }",
    "}",
    ""
  ].join("\n");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true
    })
  );
})();
