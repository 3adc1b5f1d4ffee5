// $connect: refuse banned users, remember the others.
const connections = require("./connections");

const BANNED = new Set(["mallory"]);

exports.handler = async (event) => {
  const { connectionId, authorizer } = event.requestContext;
  const user = authorizer.principalId;
  if (BANNED.has(user)) return { statusCode: 403, body: "banned" };
  const room = (event.queryStringParameters || {}).room || "lobby";
  connections.put(connectionId, { userId: user, room });
  return { statusCode: 200, body: "connected" };
};
