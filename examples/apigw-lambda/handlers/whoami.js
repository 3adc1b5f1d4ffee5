// whoami: a custom route that answers the caller (the gateway's two-way route).
exports.handler = async (event) => {
  const rc = event.requestContext;
  return {
    statusCode: 200,
    body: JSON.stringify({ type: "whoami", userId: rc.authorizer.principalId,
                           connectionId: rc.connectionId, routeKey: rc.routeKey }),
  };
};
