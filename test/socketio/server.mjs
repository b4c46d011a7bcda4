// Socket.IO echo server forced to long-polling: the baseline of marmot's
// HTTP transport figures. Every "m" event goes back to its sender as it
// came. Prints "listening PORT" once ready; stops on SIGTERM or SIGINT.
import { createServer } from "node:http";
import { Server } from "socket.io";

const http = createServer();
const io = new Server(http, {
  transports: ["polling"],
  maxHttpBufferSize: 1 << 20,
  pingInterval: 25000,
  pingTimeout: 20000,
});
io.on("connection", (socket) => {
  socket.on("m", (data) => socket.emit("m", data));
});
http.listen(0, "127.0.0.1", () => {
  console.log(`listening ${http.address().port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
