// sendMessage: broadcast to every connection of the sender's room with postToConnection.
const {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
  GoneException,
} = require("@aws-sdk/client-apigatewaymanagementapi");
const connections = require("./connections");

exports.handler = async (event) => {
  const rc = event.requestContext;
  // The one line that changes when moving to natter: where the management API is.
  const endpoint = process.env.APIGW_ENDPOINT || `https://${rc.domainName}/${rc.stage}`;
  const api = new ApiGatewayManagementApiClient({ endpoint });
  const { data } = JSON.parse(event.body);
  const { room } = connections.get(rc.connectionId) || { room: "lobby" };
  const msg = JSON.stringify({ type: "chat", from: rc.authorizer.principalId, data });
  await Promise.all(connections.inRoom(room).map(async (id) => {
    try {
      await api.send(new PostToConnectionCommand({ ConnectionId: id, Data: msg }));
    } catch (e) {
      if (e instanceof GoneException) connections.remove(id);
      else throw e;
    }
  }));
  return { statusCode: 200 }; // nothing back to the sender: it gets the broadcast too
};
