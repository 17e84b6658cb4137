// The notes' chat server, rewritten here as a peer for `bench chat --target
// notes-node` and `bench ws-c10k --targets notes-node`: a Node.js server on the
// `ws` package that sends every message it receives to every open connection,
// the sender included. No names, no rooms, no limits: that is the server the
// notes show, and the one lesson 8 is compared with.
//
// The bench starts it as `node notes-chat.js` with NODE_PATH pointing at the
// `ws` it installed under target/, and reads the port from the first line.
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

// Port 0: the kernel picks a free one; loopback only, like every lesson.
const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
const everyone = new Set();

server.on('listening', () => {
  const { address, port } = server.address();
  console.log(`notes-chat listening on ${address}:${port}`);
});

server.on('connection', (socket) => {
  everyone.add(socket);
  socket.on('message', (data, isBinary) => {
    // Relay the frame as it came: text stays text (ws 8 hands over a Buffer,
    // and sending a Buffer without `binary: false` would turn it into binary).
    for (const other of everyone) {
      if (other.readyState === WebSocket.OPEN) other.send(data, { binary: isBinary });
    }
  });
  socket.on('close', () => everyone.delete(socket));
  // A peer that vanishes mid-frame raises 'error' before 'close'; without a
  // listener Node would end the whole process.
  socket.on('error', () => everyone.delete(socket));
});
