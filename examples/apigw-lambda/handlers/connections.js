// connections: the app's connections table. On AWS this would be DynamoDB; an in-memory
// Map keeps the example self-contained (natter's rooms and presence can replace it: see
// docs/migrating-from-api-gateway.md).
const table = new Map(); // connectionId -> {userId, room}

module.exports = {
  put: (id, item) => table.set(id, item),
  get: (id) => table.get(id),
  remove: (id) => table.delete(id),
  inRoom: (room) => [...table].filter(([, v]) => v.room === room).map(([id]) => id),
};
