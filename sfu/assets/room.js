"use strict";
// The room page: joins with the token in the link, publishes the chosen camera and microphone
// through the SFU (offer/answer over /rooms/ws), shows everyone else's streams as tiles (stream
// "p<id>" is participant <id>), marks who speaks (from the audio it plays) and the room's active
// speaker (the SFU's choice from the audio levels in the packets), and reconnects by itself
// after a drop.
const q = new URLSearchParams(location.search);
const token = q.get("token") || "";
let lang = q.get("lang") === "en" ? "en" : "zh";
const T = {
  zh: { title: "视频会诊", camera: "摄像头", microphone: "麦克风", join: "加入会诊", mute: "静音",
        unmute: "取消静音", cameraOff: "关闭摄像头", cameraOn: "打开摄像头", share: "共享屏幕",
        stopShare: "停止共享", leave: "离开", left: "您已离开会诊。", rejoin: "重新加入",
        reconnecting: "网络中断，正在重新连接…", peerReconnecting: "重新连接中", me: "我",
        muted: "已静音", noDevices: "无法打开摄像头或麦克风：", ended: "会诊已结束：", other: "English" },
  en: { title: "Consultation room", camera: "Camera", microphone: "Microphone", join: "Join",
        mute: "Mute", unmute: "Unmute", cameraOff: "Camera off", cameraOn: "Camera on",
        share: "Share screen", stopShare: "Stop sharing", leave: "Leave", left: "You left the room.",
        rejoin: "Join again", reconnecting: "Connection lost, reconnecting…",
        peerReconnecting: "reconnecting", me: "Me", muted: "muted",
        noDevices: "Cannot open the camera or microphone: ", ended: "The room ended: ", other: "中文" },
};
const t = k => T[lang][k];
const $ = id => document.getElementById(id);
let ws = null, pc = null, me = null, local = null, screen = null, screenSender = null;
let left = false, ended = false, iceServers = [];
const names = {}, tiles = {}, meters = {};
let audioCtx = null;

function claims() {
  try {
    const b = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b), c => c.charCodeAt(0))));
  } catch (_) { return {}; }
}
function label() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const e of document.querySelectorAll("[data-t]")) e.textContent = t(e.dataset.t);
  $("lang").textContent = t("other");
  $("title").textContent = t("title") + (claims().room ? " · " + claims().room : "");
  $("mic").textContent = local && local.getAudioTracks()[0] && !local.getAudioTracks()[0].enabled ? t("unmute") : t("mute");
  $("cam").textContent = local && local.getVideoTracks()[0] && !local.getVideoTracks()[0].enabled ? t("cameraOn") : t("cameraOff");
  $("share").textContent = screen ? t("stopShare") : t("share");
  for (const id of Object.keys(tiles)) tileName(id);
}
function toast(text) {
  const m = $("msg"); m.textContent = text; m.style.display = "block";
  clearTimeout(toast.t); toast.t = setTimeout(() => m.style.display = "none", 4000);
}
function send(o) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(o)); }

// --- devices and preview ----------------------------------------------------------------
async function openDevices() {
  const cam = $("camera").value, mic = $("microphone").value;
  if (local) local.getTracks().forEach(tr => tr.stop());
  try {
    local = await navigator.mediaDevices.getUserMedia({
      video: cam ? { deviceId: { exact: cam } } : { width: 1280, height: 720 },
      audio: mic ? { deviceId: { exact: mic } } : true,
    });
  } catch (e) { toast(t("noDevices") + e.message); local = new MediaStream(); }
  $("preview").srcObject = local;
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [sel, kind] of [["camera", "videoinput"], ["microphone", "audioinput"]]) {
    const s = $(sel), keep = s.value;
    s.innerHTML = "";
    for (const d of devices.filter(d => d.kind === kind)) {
      const o = document.createElement("option"); o.value = d.deviceId; o.textContent = d.label || d.deviceId.slice(0, 8);
      s.appendChild(o);
    }
    if (keep) s.value = keep;
  }
}
$("camera").addEventListener("change", openDevices);
$("microphone").addEventListener("change", openDevices);

// --- tiles -------------------------------------------------------------------------------
function tile(id) {
  if (tiles[id]) return tiles[id];
  const el = document.createElement("div");
  el.className = "tile" + (id === String(me) ? " me" : "");
  el.dataset.id = id;
  const v = document.createElement("video");
  v.autoplay = true; v.playsInline = true;
  if (id === String(me)) v.muted = true;
  const n = document.createElement("div"); n.className = "name";
  const s = document.createElement("div"); s.className = "state";
  el.append(v, n, s);
  $("tiles").appendChild(el);
  tiles[id] = { el, video: v, name: n, state: s, stream: new MediaStream(), muted: {} };
  v.srcObject = tiles[id].stream;
  tileName(id);
  return tiles[id];
}
function tileName(id) {
  const x = tiles[id]; if (!x) return;
  x.name.textContent = id === String(me) ? `${names[id] || ""} (${t("me")})` : (names[id] || id);
  const st = [];
  if (x.el.classList.contains("reconnecting")) st.push(t("peerReconnecting"));
  if (x.muted.audio) st.push(t("muted"));
  x.state.textContent = st.join(" · ");
  x.state.style.display = st.length ? "" : "none";
}
function dropTile(id) {
  const x = tiles[id]; if (!x) return;
  x.el.remove(); delete tiles[id]; delete meters[id];
}
// Who speaks: the level of each stream's audio, measured where it plays.
function meter(id, stream) {
  if (!stream.getAudioTracks().length) return;
  audioCtx = audioCtx || new AudioContext();
  const src = audioCtx.createMediaStreamSource(stream);
  const an = audioCtx.createAnalyser(); an.fftSize = 512;
  src.connect(an);
  meters[id] = { an, buf: new Float32Array(an.fftSize) };
}
setInterval(() => {
  for (const [id, m] of Object.entries(meters)) {
    m.an.getFloatTimeDomainData(m.buf);
    let s = 0; for (const x of m.buf) s += x * x;
    const loud = Math.sqrt(s / m.buf.length) > 0.02;
    if (tiles[id]) tiles[id].el.classList.toggle("speaking", loud);
  }
}, 200);

// --- peer connection ----------------------------------------------------------------------
async function waitGathering(p) {
  if (p.iceGatheringState === "complete") return;
  await new Promise(res => {
    const done = () => { if (p.iceGatheringState === "complete") res(); };
    p.addEventListener("icegatheringstatechange", done);
    setTimeout(res, 2000);
  });
}
async function offer() {
  const o = await pc.createOffer();
  await pc.setLocalDescription(o);
  await waitGathering(pc);
  send({ type: "offer", sdp: pc.localDescription.sdp });
}
function startPc() {
  pc = new RTCPeerConnection({ iceServers });
  for (const tr of local.getTracks()) {
    const init = { direction: "sendonly", streams: [local] };
    // The camera goes out in three simulcast layers, lowest first (the SFU's layer order):
    // each viewer gets the one its link and tile can take.
    if (tr.kind === "video") init.sendEncodings = [
      { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150000 },
      { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500000 },
      { rid: "h", maxBitrate: 1500000 },
    ];
    pc.addTransceiver(tr, init);
  }
  pc.ontrack = e => {
    const sid = (e.streams[0] && e.streams[0].id) || "";
    const id = sid.startsWith("p") ? sid.slice(1) : sid;
    const x = tile(id);
    x.stream.addTrack(e.track);
    if (e.track.kind === "audio") meter(id, new MediaStream([e.track]));
    e.track.onended = () => x.stream.removeTrack(e.track);
    x.video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") pc.restartIce();
  };
  const mine = tile(String(me));
  mine.video.srcObject = local;
  meter(String(me), local);
  offer().catch(e => toast(e.message));
}
window.roomStats = async () => {
  if (!pc) return { framesDecoded: 0, playing: 0 };
  const s = await pc.getStats();
  let framesDecoded = 0;
  const layers = [];
  s.forEach(r => {
    if (r.type === "inbound-rtp" && r.kind === "video") framesDecoded += r.framesDecoded || 0;
    // The camera's simulcast layers that are going out, by rid.
    if (r.type === "outbound-rtp" && r.kind === "video" && r.rid && r.packetsSent > 0) layers.push(r.rid);
  });
  const playing = Object.entries(tiles).filter(([id, x]) => id !== String(me) &&
    x.video.readyState >= 2 && !x.video.paused && x.video.videoWidth > 0).length;
  return { framesDecoded, playing, layers: layers.sort(), connection: pc.connectionState };
};

// --- signalling ---------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/rooms/ws?token=${encodeURIComponent(token)}`);
  ws.onmessage = async ev => {
    const m = JSON.parse(ev.data);
    if (m.type === "joined") {
      me = m.you; iceServers = m.ice_servers || [];
      names[me] = claims().name || "";
      for (const p of m.participants) { names[p.id] = p.name; const x = tile(String(p.id));
        x.el.classList.toggle("reconnecting", !!p.reconnecting); x.muted = p.muted || {}; tileName(String(p.id)); }
      $("banner").style.display = "none";
      if (!pc || pc.connectionState === "failed" || pc.connectionState === "closed") startPc();
      else if (m.resumed && pc.connectionState !== "connected") pc.restartIce();
    } else if (m.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
    } else if (m.type === "offer") {
      await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: "answer", sdp: pc.localDescription.sdp });
    } else if (m.type === "participant") {
      const id = String(m.id);
      if (m.name) names[id] = m.name;
      if (m.event === "joined") tile(id);
      else if (m.event === "left") dropTile(id);
      else if (m.event === "reconnecting" && tiles[id]) tiles[id].el.classList.add("reconnecting");
      else if (m.event === "resumed" && tiles[id]) tiles[id].el.classList.remove("reconnecting");
      else if (m.event === "speaking") {
        // The SFU's active speaker: one tile at a time.
        for (const [other, x] of Object.entries(tiles)) x.el.classList.toggle("active", other === id);
        document.body.dataset.speaker = id;
      }
      tileName(id);
    } else if (m.type === "mute") {
      const x = tile(String(m.id)); x.muted[m.kind] = m.muted; tileName(String(m.id));
    } else if (m.type === "error") {
      toast(m.message);
    } else if (m.type === "removed" || m.type === "closed") {
      ended = true; toast(t("ended") + m.message); finish();
    }
  };
  ws.onclose = () => {
    if (left || ended) return;
    $("banner").textContent = t("reconnecting"); $("banner").style.display = "block";
    setTimeout(connect, 1000);
  };
}

function finish() {
  left = true;
  if (pc) pc.close(); pc = null;
  if (ws) ws.close();
  for (const id of Object.keys(tiles)) dropTile(id);
  $("room").style.display = "none"; $("ended").style.display = "flex";
}

$("join").addEventListener("click", async () => {
  if (!local) await openDevices();
  if (local) { $("preview").srcObject = null; }
  $("pre").style.display = "none"; $("room").style.display = "flex";
  left = false; ended = false;
  connect();
});
$("rejoin").addEventListener("click", () => location.reload());
$("leave").addEventListener("click", () => { send({ type: "leave" }); finish(); });
$("mic").addEventListener("click", () => {
  const a = local && local.getAudioTracks()[0]; if (!a) return;
  a.enabled = !a.enabled; send({ type: "mute", kind: "audio", muted: !a.enabled }); label();
});
$("cam").addEventListener("click", () => {
  const v = local && local.getVideoTracks()[0]; if (!v) return;
  v.enabled = !v.enabled; send({ type: "mute", kind: "video", muted: !v.enabled }); label();
});
$("share").addEventListener("click", async () => {
  if (screen) {
    screen.getTracks().forEach(tr => tr.stop());
    if (screenSender) pc.removeTrack(screenSender);
    screen = null; screenSender = null; label(); offer().catch(e => toast(e.message)); return;
  }
  try {
    screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    const tr = screen.getVideoTracks()[0];
    screenSender = pc.addTransceiver(tr, { direction: "sendonly", streams: [screen] }).sender;
    tr.onended = () => { if (screen) $("share").click(); };
    label(); await offer();
  } catch (e) { screen = null; toast(e.message); label(); }
});
$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; label(); });
label();
openDevices();
