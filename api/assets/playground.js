// Starts GraphiQL against this server: queries and mutations over POST /graphql,
// subscriptions over the graphql-transport-ws protocol at /graphql/ws. Headers typed in
// the "Headers" tab (e.g. {"Authorization": "Bearer <token>"}) go with every HTTP request
// and into the WebSocket's connection_init payload.
(function () {
  var loc = window.location;
  var wsUrl = (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/graphql/ws";
  var fetcher = GraphiQL.createFetcher({ url: loc.origin + "/graphql", subscriptionUrl: wsUrl });
  var defaultQuery = [
    "# Welcome to cartsource!",
    "# Run Catalog (no token needed) with the",
    "# button on the right.",
    "#",
    "# Carts need a token: run",
    "#   cartsource token --sub alice",
    "# and put this in the Headers tab below:",
    "#   {\"Authorization\": \"Bearer <token>\"}",
    "# Run NewCart, put its id in the",
    "# Variables tab as {\"cart\": \"<id>\"},",
    "# then run Add and Cart.",
    "",
    "query Catalog {",
    "  products(first: 10) {",
    "    nodes { sku name price { amount currencyCode } available }",
    "  }",
    "}",
    "",
    "mutation NewCart { createCart { cart { id version } position } }",
    "",
    "mutation Add($cart: UUID!) {",
    "  addItemToCart(input: { cartId: $cart, sku: \"apple\", quantity: 2 }) {",
    "    cart { version itemCount lines { sku quantity } }",
    "    position",
    "  }",
    "}",
    "",
    "query Cart($cart: UUID!) { cart(id: $cart) { version status lines { sku quantity } } }",
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
