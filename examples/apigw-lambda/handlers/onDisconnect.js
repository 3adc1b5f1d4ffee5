// $disconnect: forget the connection.
const connections = require("./connections");

exports.handler = async (event) => {
  connections.remove(event.requestContext.connectionId);
  return { statusCode: 200 };
};
