"use strict";
// The thin client of imaging's viewer: it sends operations over /view/ws and draws the frames
// the server renders for its canvas. Each frame comes with a `geometry` message (the patient
// point of pixel (0, 0) and one pixel's displacement right and down), which turns canvas
// positions into patient coordinates for measurements, and places annotations, crosshairs
// and the scale bar.
const q = new URLSearchParams(location.search);
let lang = q.get("lang") === "en" ? "en" : "zh";
const T = {
  zh: { wl: "窗宽 {w} / 窗位 {c}", slice: "层面 {s}", zoom: "缩放 {z}", auto: "默认窗",
        presets: { "": "窗位预设", brain: "脑窗", subdural: "硬膜下", stroke: "卒中",
          lung: "肺窗", mediastinum: "纵隔窗", abdomen: "腹部", liver: "肝脏", bone: "骨窗" },
        tools: { wl: "窗宽窗位 (W)", pan: "平移 (P)", zoom: "缩放 (Z)", scroll: "翻页 (S)",
          length: "长度 (L)", angle: "角度 (A)", rectangle: "矩形 ROI (B)", ellipse: "椭圆 ROI (E)",
          arrow: "箭头标注 (T)", probe: "CT 值 (V)", locate: "定位十字线 (C)", erase: "删除标注 (D)",
          tilt: "斜位倾斜 (O)" },
        kinds: { length: "长度", angle: "角度", rectangle: "矩形", ellipse: "椭圆", polygon: "多边形",
          arrow: "箭头", probe: "CT 值" },
        area: "面积", mean: "均值", sd: "标准差", min: "最小", max: "最大",
        arrowText: "标注文字：", attachments: "附件", images: "影像",
        planes: { axial: "轴位", coronal: "冠状位", sagittal: "矢状位", oblique: "斜位" },
        slabs: { "": "无层块", "mip:10": "MIP 10 mm", "mip:20": "MIP 20 mm", "minip:10": "MinIP 10 mm",
          "average:5": "平均 5 mm", "average:10": "平均 10 mm" },
        asks: "{c} 申请控制",
        fps: "{f} 帧/秒", control: "控制者", you: "（本人）",
        frame: "第 {f}/{n} 帧", cannot: "无法显示", colour: "彩色图像（不调窗）",
        series: "序列 {n}", thickness: "层厚 {t} mm", position: "位置 {p} mm",
        sex: { M: "男", F: "女", O: "其他" },
        calibration: { detector: "探测器处测量", none: "未校准（像素）" },
        maps: { grey: "灰阶", hot: "伪彩：热铁", rainbow: "伪彩：彩虹" }, subtracted: "减影（蒙片第 {m} 帧）" },
  en: { wl: "W {w} / L {c}", slice: "Slice {s}", zoom: "Zoom {z}", auto: "series window",
        presets: { "": "Presets", brain: "Brain", subdural: "Subdural", stroke: "Stroke",
          lung: "Lung", mediastinum: "Mediastinum", abdomen: "Abdomen", liver: "Liver", bone: "Bone" },
        tools: { wl: "Window/level (W)", pan: "Pan (P)", zoom: "Zoom (Z)", scroll: "Scroll (S)",
          length: "Length (L)", angle: "Angle (A)", rectangle: "Rectangle ROI (B)",
          ellipse: "Ellipse ROI (E)", arrow: "Arrow (T)", probe: "Probe (V)",
          locate: "Crosshair locate (C)", erase: "Erase (D)", tilt: "Tilt oblique (O)" },
        kinds: { length: "Length", angle: "Angle", rectangle: "Rectangle", ellipse: "Ellipse",
          polygon: "Polygon", arrow: "Arrow", probe: "Probe" },
        area: "Area", mean: "Mean", sd: "SD", min: "Min", max: "Max",
        arrowText: "Label:", attachments: "Attachments", images: "Images",
        planes: { axial: "Axial", coronal: "Coronal", sagittal: "Sagittal", oblique: "Oblique" },
        slabs: { "": "No slab", "mip:10": "MIP 10 mm", "mip:20": "MIP 20 mm", "minip:10": "MinIP 10 mm",
          "average:5": "Average 5 mm", "average:10": "Average 10 mm" },
        asks: "{c} asks for control",
        fps: "{f} fps", control: "In control", you: " (you)",
        frame: "Frame {f} of {n}", cannot: "Cannot show", colour: "colour (no window)",
        series: "Series {n}", thickness: "Thickness {t} mm", position: "Position {p} mm",
        sex: { M: "M", F: "F", O: "O" },
        calibration: { detector: "measured at the detector", none: "uncalibrated (pixels)" },
        maps: { grey: "Grey", hot: "Hot iron", rainbow: "Rainbow" }, subtracted: "subtracted (mask frame {m})" },
};
const KEYS = { w: "wl", p: "pan", z: "zoom", s: "scroll", l: "length", a: "angle", b: "rectangle",
  e: "ellipse", t: "arrow", v: "probe", c: "locate", d: "erase", o: "tilt" };
const fmt = (s, v) => s.replace(/\{(\w+)\}/g, (_, k) => v[k]);
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const att = document.getElementById("att");
let ws, state = null, me = null, controller = null, requestedBy = null, info = "", modality = "", study = q.get("study") || "";
let tool = "wl";
// Per viewport: the latest frame, its geometry, and why it could not be shown (kept on screen
// until a frame comes).
const images = [], geometry = [], errors = [];

// --- vectors -----------------------------------------------------------------------------
const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const mul = (a, k) => [a[0] * k, a[1] * k, a[2] * k];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

// The toolbar's icons (24x24 strokes, drawn here: nothing is fetched from outside).
const ICONS = {
  zoomin: "M10 4a6 6 0 1 0 0 12a6 6 0 1 0 0-12M20 20l-5.6-5.6M7 10h6M10 7v6",
  zoomout: "M10 4a6 6 0 1 0 0 12a6 6 0 1 0 0-12M20 20l-5.6-5.6M7 10h6",
  rotate: "M19 12a7 7 0 1 1-2.1-5M19 4v4h-4",
  fliph: "M12 3v18M9 6L4 12l5 6zM15 6l5 6-5 6z",
  flipv: "M3 12h18M6 9l6-5 6 5zM6 15l6 5 6-5z",
  invert: "M12 4a8 8 0 1 0 0 16zM12 4a8 8 0 1 1 0 16",
  dsa: "M4 5h7v14H4zM13 5h7v14h-7M16 9v6M15 12h2",
  "1x1": "M4 4h16v16H4z",
  "1x2": "M4 4h16v16H4zM12 4v16",
  "2x2": "M4 4h16v16H4zM12 4v16M4 12h16",
  mpr: "M3 5h6v14H3zM10 5h4v14h-4zM15 5h6v14h-6z",
  mammo: "M11 4v16M13 4v16M11 6c-6 1-7 10 0 12M13 6c6 1 7 10 0 12",
  compare: "M3 5h8v14H3zM13 5h8v14h-8zM6 12h2M16 12h2",
  sync: "M8 12h8M7 8H5a4 4 0 0 0 0 8h2M17 8h2a4 4 0 0 1 0 8h-2",
  cine: "M7 5l12 7-12 7z",
  clear: "M5 5l14 14M19 5L5 19",
  png: "M12 3l8 9-8 9-8-9z",
  request: "M8 12V5a1.5 1.5 0 0 1 3 0v6M11 11V4a1.5 1.5 0 0 1 3 0v7M14 11V6a1.5 1.5 0 0 1 3 0v7c0 4-2 7-6 7-3 0-4-2-6-5l-1-3a1.5 1.5 0 0 1 3-1l1 2",
  grant: "M4 12h12M12 7l5 5-5 5M20 4v16",
  reset: "M5 12a7 7 0 1 0 2-5M5 4v4h4",
  corners: "M12 8v0M12 11v6M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18",
};
function label() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const b of document.querySelectorAll("#bar button")) {
    const words = b.dataset[lang], key = b.dataset.key ? ` (${b.dataset.key})` : "";
    const d = ICONS[b.dataset.op];
    b.innerHTML = d ? `<svg viewBox="0 0 24 24" aria-hidden="true"><path d="${d}"/></svg>` : "";
    const span = document.createElement("span"); span.className = "lbl"; span.textContent = words;
    b.appendChild(span);
    b.title = words + key;
    b.setAttribute("aria-label", words);
  }
  const fill = (id, entries, value) => {
    const sel = document.getElementById(id);
    sel.innerHTML = "";
    for (const [k, v] of entries) {
      const o = document.createElement("option"); o.value = k; o.textContent = v; sel.appendChild(o);
    }
    if (value !== undefined) sel.value = value;
  };
  fill("preset", Object.entries(T[lang].presets));
  fill("tool", Object.entries(T[lang].tools), tool);
  fill("plane", Object.entries(T[lang].planes));
  fill("slab", Object.entries(T[lang].slabs));
  fill("colormap", Object.entries(T[lang].maps), document.getElementById("colormap").value || "grey");
  fill("fps", [5, 10, 15, 24, 30].map(f => [f, fmt(T[lang].fps, { f })]), document.getElementById("fps").value || 15);
  attachmentList(attachmentList.items || []);
  overlay();
}

function send(o) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(o)); }

function cells(n) {
  const W = canvas.width, H = canvas.height;
  if (n <= 1) return [[0, 0, W, H]];
  if (n === 2) return [[0, 0, W / 2, H], [W / 2, 0, W / 2, H]];
  if (n === 3) return [[0, 0, W / 3, H], [W / 3, 0, W / 3, H], [2 * W / 3, 0, W / 3, H]];
  return [[0, 0, W / 2, H / 2], [W / 2, 0, W / 2, H / 2], [0, H / 2, W / 2, H / 2], [W / 2, H / 2, W / 2, H / 2]];
}

function fit() {
  const r = canvas.getBoundingClientRect();
  const dpr = Math.min(window.devicePixelRatio || 1, 2);
  canvas.width = Math.max(32, Math.round(r.width * dpr));
  canvas.height = Math.max(32, Math.round(r.height * dpr));
  const n = state ? state.viewports.length : 1;
  const c = cells(n)[0];
  send({ op: "resize", width: Math.max(16, Math.min(4096, Math.round(c[2]))),
         height: Math.max(16, Math.min(4096, Math.round(c[3]))) });
  draw();
}

// --- canvas <-> patient ------------------------------------------------------------------
// A canvas position (device pixels) -> (viewport, frame pixel x, y).
function hit(cx, cy) {
  const cs = cells(state ? state.viewports.length : 1);
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i];
    if (cx >= c[0] && cx < c[0] + c[2] && cy >= c[1] && cy < c[1] + c[3]) {
      const g = geometry[i];
      const fx = g ? (cx - c[0]) * g.width / c[2] : 0, fy = g ? (cy - c[1]) * g.height / c[3] : 0;
      return { i, fx, fy, g };
    }
  }
  return { i: 0, fx: 0, fy: 0, g: geometry[0] };
}
function toPatient(h) {
  const g = h.g;
  return add(add(g.origin, mul(g.dx, h.fx - 0.5)), mul(g.dy, h.fy - 0.5));
}
// A patient point -> canvas (device pixels) in viewport i, and its depth from the plane (mm).
function toCanvas(i, p) {
  const g = geometry[i], c = cells(state.viewports.length)[i];
  const d = sub(p, g.origin);
  const fx = 0.5 + dot(d, g.dx) / dot(g.dx, g.dx), fy = 0.5 + dot(d, g.dy) / dot(g.dy, g.dy);
  return { x: c[0] + fx * c[2] / g.width, y: c[1] + fy * c[3] / g.height, depth: dot(d, g.normal) };
}
function devicePoint(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}

// --- drawing -----------------------------------------------------------------------------
function valueText(a) {
  const t = T[lang];
  if (a.kind === "length" && a.value != null) return a.value.toFixed(1) + lengthUnit();
  if (a.kind === "angle" && a.value != null) return a.value.toFixed(1) + "°";
  if (a.kind === "probe" && a.value != null) return Math.round(a.value) + (modality === "CT" ? " HU" : "");
  if (a.stats) {
    const s = a.stats, r = v => (Math.round(v * 10) / 10).toString();
    return `${t.area} ${r(s.area_mm2)} mm² · ${t.mean} ${r(s.mean)} · ${t.sd} ${r(s.sd)} · ${t.min} ${r(s.min)} · ${t.max} ${r(s.max)}`;
  }
  return a.text || "";
}

function outline(i, a) {
  // The points of the shape to stroke, patient space.
  const [p, q2] = a.points;
  if ((a.kind === "rectangle" || a.kind === "ellipse") && a.axes) {
    const [r, c] = a.axes, d = sub(q2, p), u = dot(d, r), v = dot(d, c);
    if (a.kind === "rectangle") return [p, add(p, mul(r, u)), q2, add(p, mul(c, v)), p];
    const centre = mul(add(p, q2), 0.5), out = [];
    for (let k = 0; k <= 48; k++) {
      const t = k / 48 * 2 * Math.PI;
      out.push(add(centre, add(mul(r, Math.cos(t) * u / 2), mul(c, Math.sin(t) * v / 2))));
    }
    return out;
  }
  if (a.kind === "polygon") return [...a.points, a.points[0]];
  return a.points;
}

function drawAnnotations(i) {
  const g = geometry[i];
  if (!g || !state) return;
  for (const [id, a] of Object.entries(state.annotations)) {
    const pts = outline(i, a).map(p => toCanvas(i, p));
    if (!a.points.every(p => Math.abs(toCanvas(i, p).depth) <= g.half_thickness + 1e-6)) continue;
    ctx.strokeStyle = "#ffd54a"; ctx.fillStyle = "#ffd54a"; ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, k) => k ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y));
    if (a.kind === "probe") ctx.arc(pts[0].x, pts[0].y, 3, 0, 2 * Math.PI);
    ctx.stroke();
    if (a.kind === "arrow" && pts.length === 2) {
      const [h, tail] = pts, ang = Math.atan2(tail.y - h.y, tail.x - h.x);
      ctx.beginPath();
      for (const s of [-0.4, 0.4]) { ctx.moveTo(h.x, h.y); ctx.lineTo(h.x + 12 * Math.cos(ang + s), h.y + 12 * Math.sin(ang + s)); }
      ctx.stroke();
    }
    const at = pts[pts.length - 1];
    ctx.font = `${Math.round(12 * (window.devicePixelRatio || 1))}px sans-serif`;
    ctx.fillText(`${id}: ${valueText(a)}`, at.x + 6, at.y - 6);
  }
}

function drawScaleBar(i, c) {
  const g = geometry[i];
  if (!g) return;
  const perDevice = g.pixel_mm * g.width / c[2];
  const mm = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].filter(m => m / perDevice <= c[2] / 4).pop();
  if (!mm) return;
  // Above the bottom-right corner text where it is drawn over this viewport (it may wrap to
  // two lines on a phone).
  const corner = c[0] + c[2] >= canvas.width - 1 && c[1] + c[3] >= canvas.height - 1 &&
    !document.getElementById("stage").classList.contains("bare");
  const lift = corner ? Math.max(30, document.getElementById("br").offsetHeight * (window.devicePixelRatio || 1) + 14) : 30;
  const len = mm / perDevice, x = c[0] + c[2] - len - 12, y = c[1] + c[3] - lift;
  ctx.strokeStyle = "#ddd"; ctx.fillStyle = "#ddd"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(x, y - 4); ctx.lineTo(x, y); ctx.lineTo(x + len, y); ctx.lineTo(x + len, y - 4); ctx.stroke();
  ctx.font = `${Math.round(11 * (window.devicePixelRatio || 1))}px sans-serif`;
  // Without a pixel spacing the bar counts pixels.
  ctx.fillText(mm + (g.stack && g.stack.calibration === "none" ? " px" : " mm"), x, y - 6);
  canvas.dataset.scalebar = mm;
}

// Orientation markers: the patient direction (LPS: +x left, +y posterior, +z head) of each
// canvas edge, from the geometry's pixel steps, strongest component first, up to three letters
// for an oblique plane. None on a stack (its geometry is the image's, not the patient's).
function orientationOf(v) {
  const n = Math.hypot(v[0], v[1], v[2]) || 1;
  const letters = [["L", "R"], ["P", "A"], ["H", "F"]];
  return [0, 1, 2].map(k => [Math.abs(v[k]) / n, v[k] > 0 ? letters[k][0] : letters[k][1]])
    .filter(([m]) => m > 0.25).sort((a, b) => b[0] - a[0]).map(([, l]) => l).join("");
}
const markers = [];
function drawMarkers(i, c) {
  const g = geometry[i];
  if (!g || g.stack) { markers[i] = null; return; }
  const neg = v => v.map(x => -x);
  const m = [orientationOf(neg(g.dy)), orientationOf(g.dx), orientationOf(g.dy), orientationOf(neg(g.dx))];
  markers[i] = m;
  canvas.dataset.markers = JSON.stringify(markers);
  const size = Math.round(14 * (window.devicePixelRatio || 1));
  ctx.font = `bold ${size}px sans-serif`; ctx.fillStyle = "#e8d36a"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.fillText(m[0], c[0] + c[2] / 2, c[1] + size);
  ctx.fillText(m[1], c[0] + c[2] - size, c[1] + c[3] / 2);
  ctx.fillText(m[2], c[0] + c[2] / 2, c[1] + c[3] - size);
  ctx.fillText(m[3], c[0] + size, c[1] + c[3] / 2);
  ctx.textAlign = "start"; ctx.textBaseline = "alphabetic";
}

const LINE_COLOURS = ["#4fc3f7", "#81c784", "#ff8a65", "#ce93d8"];
function draw() {
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  const n = state ? state.viewports.length : 1;
  cells(n).forEach((c, i) => {
    ctx.save();
    ctx.beginPath(); ctx.rect(c[0], c[1], c[2], c[3]); ctx.clip();
    if (images[i]) ctx.drawImage(images[i], c[0], c[1], c[2], c[3]);
    const g = geometry[i];
    if (g && state && state.layout === "mpr") for (const l of g.crosshairs) {
      ctx.strokeStyle = LINE_COLOURS[l.viewport % 4]; ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(c[0] + l.line[0] * c[2] / g.width, c[1] + l.line[1] * c[3] / g.height);
      ctx.lineTo(c[0] + l.line[2] * c[2] / g.width, c[1] + l.line[3] * c[3] / g.height);
      ctx.stroke();
    }
    if (errors[i]) drawError(c, errors[i]);
    drawAnnotations(i);
    drawScaleBar(i, c);
    drawMarkers(i, c);
    if (drag && drag.preview && drag.i === i) {
      ctx.strokeStyle = "#fff"; ctx.setLineDash([4, 3]); ctx.beginPath();
      drag.preview.forEach((p, k) => k ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1]));
      ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.restore();
    if (n > 1) { ctx.strokeStyle = i === focus ? "#2f6fb3" : "#345"; ctx.strokeRect(c[0] + 0.5, c[1] + 0.5, c[2] - 1, c[3] - 1); }
  });
}

// Why a viewport shows nothing: written across it, wrapped, until a frame comes.
function drawError(c, text) {
  const size = Math.max(12, Math.round(14 * devicePixelRatio));
  ctx.fillStyle = "#e8b04a"; ctx.font = `${size}px sans-serif`; ctx.textBaseline = "top";
  const lines = [T[lang].cannot + ":"], words = text.split(/(?<=[\s/\\])/);
  let line = "";
  for (const w of words) {
    if (ctx.measureText(line + w).width > c[2] - 2 * size && line) { lines.push(line); line = ""; }
    line += w;
  }
  lines.push(line);
  // Below the corner overlay.
  lines.forEach((l, k) => ctx.fillText(l, c[0] + size, c[1] + 3 * size + k * size * 1.4));
}

// The unit of lengths on the viewport in focus: pixels where the image has no spacing.
function lengthUnit() {
  const g = geometry[focus];
  return g && g.stack && g.stack.calibration === "none" ? " px" : " mm";
}

function overlay() {
  const t = T[lang];
  const v = state && state.viewports[focus];
  const wl = v && v.window ? fmt(t.wl, { w: Math.round(v.window[1]), c: Math.round(v.window[0]) }) : t.auto;
  const gf = geometry[focus];
  const seriesLine = picked ? [picked.seriesNo && fmt(t.series, { n: picked.seriesNo }), picked.seriesText].filter(Boolean).join(" ") : "";
  const sliceLines = gf && !gf.stack ? [fmt(t.position, { p: dot(gf.origin, gf.normal).toFixed(1) }),
    picked && picked.thickness ? fmt(t.thickness, { t: (+picked.thickness).toFixed(1) }) : ""] : [];
  document.getElementById("wl").textContent = [seriesLine, ...sliceLines,
    gf && gf.stack && gf.stack.colour ? t.colour : wl].filter(Boolean).join("\n");
  const g = geometry[focus], st = g && g.stack;
  const where = st ? fmt(t.frame, { f: st.frame + 1, n: st.frames }) +
    (t.calibration[st.calibration] ? " · " + t.calibration[st.calibration] : "") : v ? fmt(t.slice, { s: v.slice }) : "";
  const dsa = v && v.subtract ? " · " + fmt(t.subtracted, { m: v.subtract.mask + 1 }) +
    (v.subtract.shift[0] || v.subtract.shift[1] ? ` (${v.subtract.shift.join(", ")} px)` : "") : "";
  document.getElementById("slice").textContent = v ? where + dsa + " · " + fmt(t.zoom, { z: v.zoom.toFixed(2) }) : "";
  // A stack is shown in the plane it was acquired in: no other plane to choose. Colour is
  // shown as it is (no colour map); subtraction needs grey frames.
  document.getElementById("plane").disabled = !!st;
  document.getElementById("colormap").disabled = !!(st && st.colour);
  document.querySelector("[data-op=dsa]").disabled = !(st && !st.colour && st.frames > 1);
  // Four corners, as on a PACS workstation: patient (top left), study and control (top
  // right), series, image and window (bottom left), view and calibration (bottom right).
  const p = picked && picked.patient;
  document.getElementById("tl").textContent = p ? [p.name, p.id,
    [t.sex[p.sex] || p.sex, p.age, p.birth].filter(Boolean).join(" ")].filter(Boolean).join("\n") : info;
  const control = (controller === null ? "" :
    t.control + " " + controller + (controller === me ? t.you : "")) +
    (requestedBy !== null ? " · " + fmt(t.asks, { c: requestedBy }) : "");
  document.getElementById("tr").textContent = [...(picked ? picked.studyText : []), control].filter(Boolean).join("\n");
  document.querySelector("[data-op=request]").style.display = me !== null && controller !== me && requestedBy !== me ? "" : "none";
  document.querySelector("[data-op=grant]").style.display = controller === me && requestedBy !== null ? "" : "none";
  if (v) {
    document.getElementById("colormap").value = v.colormap || "grey";
    document.querySelector("[data-op=dsa]").classList.toggle("on", !!v.subtract);
    document.getElementById("plane").value = typeof v.plane === "string" ? v.plane : "oblique";
    document.getElementById("slab").value = v.slab ? `${v.slab[0]}:${v.slab[1]}` : "";
  }
  const notes = document.getElementById("notes");
  notes.innerHTML = "";
  for (const [id, a] of Object.entries(state ? state.annotations : {})) {
    const d = document.createElement("div");
    d.className = "note"; d.dataset.id = id;
    d.textContent = `${id}. ${t.kinds[a.kind] || a.kind}: ${valueText(a)}`;
    notes.appendChild(d);
  }
}

function toast(text) {
  const m = document.getElementById("msg");
  m.textContent = text; m.style.display = "block";
  clearTimeout(toast.t); toast.t = setTimeout(() => m.style.display = "none", 3000);
}

function onMessage(ev) {
  if (typeof ev.data === "string") {
    const m = JSON.parse(ev.data);
    if (m.type === "hello") { me = m.client; controller = m.controller; fit();
      if (q.get("series") && me === controller && !m.resumed) openSeries(q.get("series")); }
    else if (m.type === "state") { const n = state ? state.viewports.length : 0; state = m.state;
      if (state.viewports.length !== n) { geometry.length = 0; images.length = 0; fit(); }
      if (focus >= state.viewports.length) focus = 0;
      document.querySelector("[data-op=sync]").classList.toggle("on", !!state.sync);
      for (const b of document.querySelectorAll("#layouts button")) b.classList.toggle("on", b.dataset.op === state.layout);
      overlay(); draw(); }
    else if (m.type === "geometry") { geometry[m.viewport] = m; errors[m.viewport] = null;
      canvas.dataset.error = errors.filter(Boolean).join("\n"); overlay(); }
    else if (m.type === "control") { controller = m.controller; requestedBy = m.requested_by ?? null; overlay(); }
    else if (m.type === "error" && m.viewport != null) { errors[m.viewport] = m.message; images[m.viewport] = null;
      canvas.dataset.error = errors.filter(Boolean).join("\n"); draw(); }
    else if (m.type === "error") toast(m.message);
    return;
  }
  const b = new Uint8Array(ev.data);
  const vp = b[0], png = b[1] === 1;
  createImageBitmap(new Blob([b.subarray(16)], { type: png ? "image/png" : "image/jpeg" }))
    .then(img => { images[vp] = img; draw(); canvas.dataset.frames = (+canvas.dataset.frames || 0) + 1; });
}

let clientId = null;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const resume = clientId ? `&resume=${clientId}` : "";
  ws = new WebSocket(`${proto}://${location.host}/view/ws?token=${encodeURIComponent(q.get("token") || "")}&session=${encodeURIComponent(q.get("session") || "")}${resume}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = e => { onMessage(e); if (me !== null) clientId = me; };
  ws.onclose = () => setTimeout(connect, 1000);
}

// --- input -------------------------------------------------------------------------------
// The tool decides what a drag does (W/L by default; pan with the right button or two fingers;
// pinch zooms); the wheel and arrow keys scroll the viewport under the pointer or in focus.
const pointers = new Map();
let drag = null, pending = null, focus = 0, anglePoints = null;
function flush() {
  if (pending) { send(pending); pending = null; }
  requestAnimationFrame(flush);
}
requestAnimationFrame(flush);
const DRAWN = { length: 2, rectangle: 2, ellipse: 2, arrow: 2 };
canvas.addEventListener("contextmenu", e => e.preventDefault());
canvas.addEventListener("pointerdown", e => {
  canvas.setPointerCapture(e.pointerId);
  pointers.set(e.pointerId, [e.clientX, e.clientY]);
  const [cx, cy] = devicePoint(e), h = hit(cx, cy);
  if (focus !== h.i) { focus = h.i; overlay(); draw(); }
  const v = state && state.viewports[h.i];
  const win = v && v.window ? v.window : [40, 400];
  const mode = e.button === 2 ? "pan" : tool;
  drag = { x: e.clientX, y: e.clientY, c: win[0], w: win[1], mode, i: h.i, d: null, start: h.g ? toPatient(h) : null, from: [cx, cy] };
  if (!h.g) return;
  const p = toPatient(h);
  if (mode === "probe") { send({ op: "annotate", kind: "probe", viewport: h.i, points: [p] }); drag = null; }
  else if (mode === "locate") { locate(h.i, p); drag = null; }
  else if (mode === "erase") { erase(h.i, cx, cy); drag = null; }
  else if (mode === "angle") {
    anglePoints = anglePoints && anglePoints.i === h.i ? anglePoints : { i: h.i, points: [] };
    anglePoints.points.push(p);
    if (anglePoints.points.length === 3) {
      send({ op: "annotate", kind: "angle", viewport: h.i, points: anglePoints.points }); anglePoints = null;
    }
    drag = null;
  }
});
canvas.addEventListener("pointermove", e => {
  if (!drag || !pointers.has(e.pointerId)) return;
  pointers.set(e.pointerId, [e.clientX, e.clientY]);
  const i = drag.i;
  if (pointers.size === 2) {
    const [a, b] = [...pointers.values()];
    const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
    const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    if (drag.d) pending = { op: "zoom", viewport: i, factor: Math.max(0.5, Math.min(2, d / drag.d)) };
    if (drag.mid && !drag.d) pending = { op: "pan", viewport: i, dx: (mid[0] - drag.mid[0]) * 0.5, dy: (mid[1] - drag.mid[1]) * 0.5 };
    drag.d = d; drag.mid = mid; return;
  }
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  const mm = geometry[i] ? geometry[i].pixel_mm : 0.5;
  if (drag.mode === "pan") { pending = { op: "pan", viewport: i, dx: dx * mm, dy: dy * mm }; drag.x = e.clientX; drag.y = e.clientY; return; }
  if (drag.mode === "zoom") { pending = { op: "zoom", viewport: i, factor: Math.max(0.5, Math.min(2, Math.exp(-dy / 200))) }; drag.y = e.clientY; return; }
  if (drag.mode === "scroll") { const k = Math.trunc(dy / 8); if (k) { send({ op: "scroll", viewport: i, delta: k }); drag.y = e.clientY; } return; }
  if (DRAWN[drag.mode]) {
    const [cx, cy] = devicePoint(e), [x0, y0] = drag.from;
    drag.preview = drag.mode === "length" || drag.mode === "arrow" ? [[x0, y0], [cx, cy]]
      : [[x0, y0], [cx, y0], [cx, cy], [x0, cy], [x0, y0]];
    drag.to = [cx, cy]; draw(); return;
  }
  if (drag.mode === "tilt") {
    const v = state && state.viewports[i], o = v && v.plane && v.plane.oblique ? v.plane.oblique : { pitch: 0, yaw: 0 };
    const clamp = a => Math.max(-89, Math.min(89, a));
    pending = { op: "plane", viewport: i, plane: { oblique: { pitch: clamp(o.pitch + dy * 0.3), yaw: clamp(o.yaw + dx * 0.3) } } };
    drag.x = e.clientX; drag.y = e.clientY; return;
  }
  if (drag.mode === "wl") pending = { op: "window", viewport: i, center: drag.c + dy * 2, width: Math.max(1, drag.w + dx * 4) };
});
const up = e => {
  pointers.delete(e.pointerId);
  if (drag && DRAWN[drag.mode] && drag.to && drag.start && pointers.size === 0) {
    const h = hit(drag.to[0], drag.to[1]);
    if (h.i === drag.i && h.g) {
      const end = toPatient(h), kind = drag.mode;
      const points = kind === "arrow" ? [end, drag.start] : [drag.start, end];
      const o = { op: "annotate", kind, viewport: drag.i, points };
      if (kind === "arrow") o.text = window.prompt(T[lang].arrowText, "") || "";
      send(o);
    }
    drag.preview = null; draw();
  }
  if (pointers.size === 0) drag = null;
};
canvas.addEventListener("pointerup", up);
canvas.addEventListener("pointercancel", up);
canvas.addEventListener("wheel", e => {
  e.preventDefault();
  const [cx, cy] = devicePoint(e), i = hit(cx, cy).i;
  if (e.ctrlKey) send({ op: "zoom", viewport: i, factor: e.deltaY < 0 ? 1.1 : 1 / 1.1 });
  else send({ op: "scroll", viewport: i, delta: e.deltaY > 0 ? 1 : -1 });
}, { passive: false });

// Crosshair locate: the other viewports move to the planes through the point.
function locate(i, p) {
  geometry.forEach((g, j) => {
    if (!g || j === i) return;
    const delta = Math.round(dot(sub(p, g.origin), g.normal) / g.step);
    if (delta) send({ op: "scroll", viewport: j, delta });
  });
}
function erase(i, cx, cy) {
  let best = null, bestD = 15 * (window.devicePixelRatio || 1);
  for (const [id, a] of Object.entries(state ? state.annotations : {})) {
    for (const p of outline(i, a)) {
      const c = toCanvas(i, p), d = Math.hypot(c.x - cx, c.y - cy);
      if (d < bestD) { best = id; bestD = d; }
    }
  }
  if (best !== null) send({ op: "delete_annotation", id: +best });
}
function setTool(t) { tool = t; anglePoints = null; document.getElementById("tool").value = t; }

window.addEventListener("keydown", e => {
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const v = state && state.viewports[focus];
  const shift = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] }[e.key];
  if (e.shiftKey && shift && v && v.subtract) { e.preventDefault(); subtract(undefined, shift); return; }
  const k = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 }[e.key];
  if (e.key === "m" && geometry[focus] && geometry[focus].stack) subtract(geometry[focus].stack.frame);
  else if (k) { e.preventDefault(); send({ op: "scroll", viewport: focus, delta: k }); }
  else if (e.key === "i") send({ op: "invert", viewport: focus });
  else if (e.key === "r") send({ op: "reset", viewport: null });
  else if (e.key === "h") toggleCorners();
  else if (e.key === "Escape") setTool("wl");
  else if (KEYS[e.key]) setTool(KEYS[e.key]);
});
// The corner texts on or off (the H key or the button).
function toggleCorners() {
  const stage = document.getElementById("stage");
  stage.classList.toggle("bare");
  document.querySelector("[data-op=corners]").classList.toggle("on", stage.classList.contains("bare"));
}
let cineOn = false;
document.getElementById("bar").addEventListener("click", e => {
  const button = e.target.closest && e.target.closest("button");
  if (!button) return;
  const op = button.dataset.op;
  const i = focus;
  const s1 = q.get("series"), s2 = q.get("series2") || s1;
  const ops = {
    zoomin: { op: "zoom", viewport: i, factor: 1.25 }, zoomout: { op: "zoom", viewport: i, factor: 0.8 },
    rotate: { op: "rotate", viewport: i, degrees: 90 }, fliph: { op: "flip", viewport: i, horizontal: true },
    flipv: { op: "flip", viewport: i, horizontal: false }, invert: { op: "invert", viewport: i },
    "1x1": { op: "layout", layout: "1x1" }, "1x2": { op: "layout", layout: "1x2" },
    "2x2": { op: "layout", layout: "2x2" }, mpr: { op: "layout", layout: "mpr" },
    mammo: { op: "layout", layout: "mammo" },
    compare: s1 && { op: "open", series: [s1, s2] },
    sync: { op: "sync", on: !(state && state.sync) },
    request: { op: "request_control" }, grant: { op: "grant_control" },
    reset: { op: "reset", viewport: null },
  };
  if (op === "lang") { lang = lang === "zh" ? "en" : "zh"; label(); }
  else if (op === "corners") toggleCorners();
  else if (op === "dsa") subtract(state && state.viewports[i] && state.viewports[i].subtract ? null : undefined);
  else if (op === "cine") { cineOn = !cineOn; button.classList.toggle("on", cineOn);
    send({ op: "cine", viewport: i, fps: cineOn ? +document.getElementById("fps").value : 0 }); }
  else if (op === "png") { const on = !button.classList.contains("on"); button.classList.toggle("on", on); send({ op: "png", on }); }
  else if (op === "clear") { for (const id of Object.keys(state ? state.annotations : {})) send({ op: "delete_annotation", id: +id }); }
  else if (ops[op]) send(ops[op]);
});
document.getElementById("preset").addEventListener("change", e => {
  if (e.target.value) send({ op: "preset", viewport: focus, name: e.target.value });
});
document.getElementById("tool").addEventListener("change", e => setTool(e.target.value));
document.getElementById("plane").addEventListener("change", e => {
  const p = e.target.value;
  send({ op: "plane", viewport: focus, plane: p === "oblique" ? { oblique: { pitch: 20, yaw: 0 } } : p });
  if (p === "oblique") setTool("tilt");
});
document.getElementById("slab").addEventListener("change", e => {
  const [mode, mm] = e.target.value.split(":");
  send(mode ? { op: "slab", viewport: focus, mode, thickness: +mm } : { op: "slab", viewport: focus, mode: "mip", thickness: 0 });
});
document.getElementById("colormap").addEventListener("change", e => {
  send({ op: "colormap", viewport: focus, map: e.target.value });
});
// Subtraction (DSA) on the viewport in focus: `mask` a frame, null to stop, undefined for the
// image's own mask frame (else its first); `shift` moves the mask by whole pixels.
function subtract(mask, shift) {
  const v = state && state.viewports[focus], g = geometry[focus];
  if (mask === null) { send({ op: "subtract", viewport: focus, mask: null }); return; }
  const was = v && v.subtract;
  if (mask === undefined) mask = was ? was.mask : (g && g.stack && g.stack.mask != null ? g.stack.mask : 0);
  const s = was ? was.shift : [0, 0];
  send({ op: "subtract", viewport: focus, mask, shift: shift ? [s[0] + shift[0], s[1] + shift[1]] : s });
}
document.getElementById("fps").addEventListener("change", e => {
  if (cineOn) send({ op: "cine", viewport: focus, fps: +e.target.value });
});
window.addEventListener("resize", () => { fit(); if (att.style.display === "block") showAttachment(); });

// --- attachments (ultrasound, endoscopy, pathology images): rendered by the server for this
// canvas with zoom and pan, like everything else -----------------------------------------
const attView = { id: "", zoom: 1, pan: [0, 0] };
function attachmentList(items) {
  attachmentList.items = items;
  const sel = document.getElementById("attachments");
  sel.innerHTML = "";
  sel.style.display = items.length ? "" : "none";
  const o = document.createElement("option"); o.value = ""; o.textContent = `${T[lang].images} / ${T[lang].attachments} (${items.length})`;
  sel.appendChild(o);
  for (const a of items) {
    const x = document.createElement("option"); x.value = a.id; x.textContent = a.title || a.id; sel.appendChild(x);
  }
  sel.value = attView.id;
}
function showAttachment() {
  const shown = !!attView.id;
  att.style.display = shown ? "block" : "none";
  canvas.style.display = shown ? "none" : "block";
  if (!shown) { fit(); return; }
  const r = att.getBoundingClientRect(), dpr = Math.min(window.devicePixelRatio || 1, 2);
  const w = Math.max(16, Math.min(4096, Math.round(r.width * dpr))), h = Math.max(16, Math.min(4096, Math.round(r.height * dpr)));
  att.src = `/dicomweb/studies/${encodeURIComponent(study)}/attachments/${attView.id}/rendered?viewport=${w},${h}&zoom=${attView.zoom.toFixed(3)}&pan=${attView.pan[0].toFixed(1)},${attView.pan[1].toFixed(1)}&token=${encodeURIComponent(q.get("token") || "")}`;
}
document.getElementById("attachments").addEventListener("change", e => {
  Object.assign(attView, { id: e.target.value, zoom: 1, pan: [0, 0] }); showAttachment();
});
att.addEventListener("wheel", e => {
  e.preventDefault();
  attView.zoom = Math.max(0.05, Math.min(64, attView.zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2))); showAttachment();
}, { passive: false });
let attDrag = null;
att.addEventListener("pointerdown", e => { att.setPointerCapture(e.pointerId); attDrag = [e.clientX, e.clientY]; e.preventDefault(); });
att.addEventListener("pointerup", e => {
  if (!attDrag) return;
  attView.pan[0] += (e.clientX - attDrag[0]) / attView.zoom; attView.pan[1] += (e.clientY - attDrag[1]) / attView.zoom;
  attDrag = null; showAttachment();
});
// Imaging's data routes need the page's token: as a header where fetch can send one (an
// image cannot: its URL carries the token).
function authorised() {
  return { headers: { Authorization: `Bearer ${q.get("token") || ""}` } };
}
function loadAttachments() {
  if (!study) return;
  fetch(`/dicomweb/studies/${encodeURIComponent(study)}/attachments`, authorised()).then(r => r.ok ? r.json() : [])
    .then(list => attachmentList(Array.isArray(list.items) ? list.items : [])).catch(() => {});
}

// The series this token allows (its studies are in the token's payload): a picker, and the
// first one opens when the link names none.
function tokenStudies() {
  try {
    const b = (q.get("token") || "").split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(b), c => c.charCodeAt(0)));
    return JSON.parse(json).studies || [];
  } catch (_) { return []; }
}
const seriesInfo = {};
async function loadSeries() {
  const tag = (s, t) => (s[t] && s[t].Value && s[t].Value[0]) || "";
  const found = [];
  for (const st of tokenStudies()) {
    try {
      // The four corners' attributes: patient (name, ID, sex, age, birth date), study (date,
      // description, institution), series (number, description, slice thickness).
      const fields = "00100010,00100020,00100040,00101010,00100030,00080020,00081030,00080080,0008103E,00200011,00180050";
      const r = await fetch(`/dicomweb/studies/${encodeURIComponent(st)}/series?includefield=${fields}`, authorised());
      if (r.ok && r.status !== 204) for (const s of await r.json()) found.push([st, s]);
    } catch (_) { /* shown as an empty list */ }
  }
  const sel = document.getElementById("series");
  sel.innerHTML = "";
  for (const [st, s] of found) {
    const uid = tag(s, "0020000E"), name = tag(s, "00100010");
    const date = d => d && d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d;
    seriesInfo[uid] = { study: st, modality: tag(s, "00080060"),
      info: [name.Alphabetic || name, tag(s, "00080060"), tag(s, "00080020")].filter(Boolean).join("  "),
      patient: { name: name.Alphabetic || name, id: tag(s, "00100020"), sex: tag(s, "00100040"),
        age: tag(s, "00101010"), birth: date(tag(s, "00100030")) },
      studyText: [date(tag(s, "00080020")), tag(s, "00081030"), tag(s, "00080080")].filter(Boolean),
      seriesNo: tag(s, "00200011"), seriesText: tag(s, "0008103E"), thickness: tag(s, "00180050") };
    const o = document.createElement("option"); o.value = uid;
    o.textContent = [tag(s, "00080060"), tag(s, "0008103E") || uid.slice(-12), `(${tag(s, "00201209") || "?"})`].join(" ");
    sel.appendChild(o);
  }
  sel.style.display = found.length > 1 ? "" : "none";
  thumbnails(found, tag);
  if (!q.get("series") && found.length) q.set("series", tag(found[0][1], "0020000E"));
  pick(q.get("series"));
}
// The series strip: a thumbnail of each series' first image, rendered by the server at 96 x 96
// (the image never leaves it); a click opens the series, a drag onto the second viewport of a
// two-viewport layout compares it with the first.
function thumbnails(found, tag) {
  const strip = document.getElementById("strip");
  strip.innerHTML = "";
  strip.style.display = found.length > 1 ? "" : "none";
  const enc = encodeURIComponent, token = enc(q.get("token") || "");
  for (const [st, s] of found) {
    const uid = tag(s, "0020000E");
    const d = document.createElement("div");
    d.className = "thumb"; d.draggable = true; d.dataset.series = uid;
    const img = document.createElement("img"); img.alt = ""; img.draggable = false;
    const label = document.createElement("span");
    label.textContent = [tag(s, "00080060"), tag(s, "0008103E")].filter(Boolean).join(" ");
    d.append(img, label);
    strip.appendChild(d);
    d.addEventListener("click", () => pick(uid));
    d.addEventListener("dragstart", e => e.dataTransfer.setData("text/plain", uid));
    fetch(`/dicomweb/studies/${enc(st)}/series/${enc(uid)}/instances?limit=1`, authorised())
      .then(r => r.ok && r.status !== 204 ? r.json() : [])
      .then(list => {
        const sop = list[0] && tag(list[0], "00080018");
        if (sop) img.src = `/dicomweb/studies/${enc(st)}/series/${enc(uid)}/instances/${enc(sop)}/rendered?viewport=96,96&token=${token}`;
      }).catch(() => {});
  }
}
canvas.addEventListener("dragover", e => e.preventDefault());
canvas.addEventListener("drop", e => {
  e.preventDefault();
  const uid = e.dataTransfer.getData("text/plain");
  if (!uid) return;
  const h = hit(...devicePoint(e));
  if (state && state.viewports.length === 2 && h.i === 1 && state.series[0]) {
    send({ op: "open", series: [state.series[0], uid] });
  } else pick(uid);
});

let picked = null;
function pick(uid) {
  for (const t of document.querySelectorAll(".thumb")) t.classList.toggle("on", t.dataset.series === uid);
  const s = seriesInfo[uid];
  picked = s || null;
  if (s) { info = s.info; modality = s.modality; if (s.study !== study) { study = s.study; loadAttachments(); } }
  document.getElementById("series").value = uid || "";
  overlay();
  if (uid && me !== null && me === controller && !(state && state.series.includes(uid))) openSeries(uid);
}
let lastOpened = null;
function openSeries(uid) {
  if (uid === lastOpened) return;
  lastOpened = uid;
  send({ op: "open", series: [uid] });
}
document.getElementById("series").addEventListener("change", e => { q.set("series", e.target.value); pick(e.target.value); });
loadSeries();
label();
connect();
