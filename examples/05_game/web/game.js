// The demo page: log in through the gateway, join a room, click the grid to move; everyone's
// moves arrive as pushes. With ?name=...&auto=1 it plays by itself (the browser test uses that);
// with &resume=1 too, it drops its connection before it moves, and the move goes once the session
// resumed.
import { GateClient, Writer, decode, text } from "./ember-gate.js";

const $ = (id) => document.getElementById(id);
const log = (line) => ($("log").textContent += line + "\n");
const params = new URLSearchParams(location.search);
let client = null;

for (let i = 0; i < 100; i++) {
  const cell = document.createElement("div");
  cell.dataset.x = i % 10;
  cell.dataset.y = Math.floor(i / 10);
  cell.onclick = () => move(Number(cell.dataset.x), Number(cell.dataset.y));
  $("grid").appendChild(cell);
}

function show(uid, x, y) {
  for (const cell of $("grid").children) if (cell.textContent === uid) cell.textContent = "";
  $("grid").children[y * 10 + x].textContent = uid;
}

async function play() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  try {
    client = await GateClient.connect(url, $("name").value, { resume: !!params.get("resume") });
  } catch (e) {
    $("status").textContent = `login refused: ${e.message}`;
    return;
  }
  client.onPush = (route, payload) => {
    const moved = decode(payload);
    const uid = text(moved.get(1)?.[0]);
    const x = moved.get(2)?.[0] ?? 0;
    const y = moved.get(3)?.[0] ?? 0;
    log(`push ${route}: ${uid} moved to ${x},${y}`);
    show(uid, x, y);
    if (params.get("auto") && uid === client.uid) {
      const resumed = params.get("resume") ? ` (resumed ${client.resumes})` : "";
      $("status").textContent = `done: ${uid} at ${x},${y}${resumed}`;
    }
  };
  client.onClose = (kick) => log(`closed${kick ? ": " + kick.reason : ""}`);
  client.onResume = () => log(`resumed session ${client.session}`);
  const joined = decode(await client.call("lobby.RpcJoin", new Writer().string(1, $("room").value).finish()));
  const players = (joined.get(2) || []).map(text);
  $("status").textContent = `${client.uid} in ${text(joined.get(1)[0])} with ${players.join(", ")}`;
  log(`session ${client.session}`);
}

async function move(x, y) {
  if (!client) return;
  try {
    await client.call("room.RpcMove", new Writer().uint(1, x).uint(2, y).finish());
  } catch (e) {
    log(`move refused: ${e.message} (code ${e.code})`);
  }
}

$("play").onclick = play;
if (params.get("name")) $("name").value = params.get("name");
if (params.get("room")) $("room").value = params.get("room");
if (params.get("auto")) {
  await play();
  if (params.get("resume")) client.drop(); // the move waits for the resume, then goes once
  await move(Number(params.get("x") ?? 5), Number(params.get("y") ?? 6));
}
