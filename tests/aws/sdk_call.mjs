// sdk_call: one ApiGatewayManagementApi call with the real AWS SDK v3 client, for
// tests/aws/test_aws_sdk.py. Input: one JSON argument {endpoint, region, accessKeyId,
// secretAccessKey, op: "post"|"get"|"delete", connectionId, data?}. Output: one JSON line,
// {"ok": true, ...} or {"ok": false, "name": <the SDK's exception name>, "status", "message"}.
import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const a = JSON.parse(process.argv[2]);
const client = new ApiGatewayManagementApiClient({
  endpoint: a.endpoint,
  region: a.region,
  credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
  maxAttempts: 1,
});
const commands = {
  post: () => new PostToConnectionCommand({ ConnectionId: a.connectionId, Data: a.data }),
  get: () => new GetConnectionCommand({ ConnectionId: a.connectionId }),
  delete: () => new DeleteConnectionCommand({ ConnectionId: a.connectionId }),
};
try {
  const r = await client.send(commands[a.op]());
  const out = { ok: true, status: r.$metadata.httpStatusCode };
  if (a.op === "get") {
    out.connectedAtIsDate = r.ConnectedAt instanceof Date;
    out.lastActiveAtIsDate = r.LastActiveAt instanceof Date;
    out.connectedAt = r.ConnectedAt?.toISOString();
    out.lastActiveAt = r.LastActiveAt?.toISOString();
    out.identity = r.Identity;
  }
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: e.name, status: e.$metadata?.httpStatusCode,
                               message: e.message }));
}
