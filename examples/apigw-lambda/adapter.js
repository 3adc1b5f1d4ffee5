// adapter: serves Lambda handlers to natter's HTTP integration (--integration-url). Each
// POST body is an API Gateway WebSocket Lambda proxy event; it is passed unchanged to the
// handler of its routeKey, and the handler's result goes back as the response body (natter
// reads it as a Lambda proxy result). Usage: node adapter.js [--port 9000]
const http = require("node:http");

const routes = {
  $connect: require("./handlers/onConnect").handler,
  $disconnect: require("./handlers/onDisconnect").handler,
  whoami: require("./handlers/whoami").handler,
  sendMessage: require("./handlers/sendMessage").handler,
};

const port = Number(process.argv[process.argv.indexOf("--port") + 1]) || 9000;

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    let result;
    try {
      const event = JSON.parse(Buffer.concat(chunks));
      const handler = routes[event.requestContext.routeKey] || routes.$default;
      result = handler ? await handler(event) : { statusCode: 404, body: "no route" };
    } catch (e) {
      console.error("handler failed:", e);
      result = { statusCode: 500, body: "handler failed" };
    }
    const body = JSON.stringify(result ?? { statusCode: 200 });
    res.writeHead(200, { "Content-Type": "application/json",
                         "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(port, "127.0.0.1", () => console.log(JSON.stringify({ ready: true, port })));
