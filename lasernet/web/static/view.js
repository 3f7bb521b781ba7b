// lasernet's browser view: draws the scene and frames the server sends over /ws on an equirectangular map.
//
// State lives in window.lasernet (read by people in the console and by lasernet's browser test):
//   scene        the scene message: nodes (satellites first, then ground sites), start time, live or replay
//   links        the link list the run has: a[], b[], isl[] (node indices), in the driver's creation order
//   frame        the frame drawn last: t_s, utc, lat[], lon[], sunlit[], up[] (link indices), delay_ms[]
//   framesReceived, framesDrawn, fps (frames drawn per second, over the last 2 s)
//   linkStates()  [{name: "a~b", up, delay_ms}] for every link of the run, as drawn
//   seek(t_s)     replay: a Promise of the frame at t_s;  ask(question) any question (node, path)
(function () {
  "use strict";
  const W = 1440, H = 720;
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const $ = (id) => document.getElementById(id);
  const L = window.lasernet = {
    scene: null, links: { a: [], b: [], isl: [] }, frame: null, framesReceived: 0, framesDrawn: 0, fps: 0,
    selected: null, path: null, playing: false, playSpeed: 1, errors: [],
  };
  const drawTimes = [];
  let land = null, pending = new Map(), nextId = 1, ws = null, nightKey = "";
  const night = document.createElement("canvas");
  night.width = 360; night.height = 180;

  const x = (lon) => (lon + 180) / 360 * W;
  const y = (lat) => (90 - lat) / 180 * H;

  function nodePos(i) {
    const s = L.scene, f = L.frame;
    if (i < s.n_satellites) return f ? [f.lon[i], f.lat[i]] : null;
    const n = s.nodes[i];
    return [n.lon, n.lat];
  }

  // ---------------------------------------------------------------- background: land and the Earth's night side
  function drawLand() {
    ctx.fillStyle = "#0d2140";
    ctx.fillRect(0, 0, W, H);
    if (!land) return;
    ctx.fillStyle = "#2b3d2f";
    const cw = W / land.width, ch = H / land.height;
    land.rows.forEach((runs, r) => {
      const top = H - (r + 1) * ch;  // row 0 is the southernmost band
      for (let k = 0; k < runs.length; k += 2) ctx.fillRect(runs[k] * cw, top, runs[k + 1] * cw + 0.5, ch + 0.5);
    });
  }

  function drawNight(subsolar) {
    // A point is in night where the Sun's centre is below its horizon: the angle to the subsolar point > 90 deg.
    const key = subsolar.join(",");
    if (key !== nightKey) {
      nightKey = key;
      const nctx = night.getContext("2d"), img = nctx.createImageData(360, 180);
      const d = Math.PI / 180, sl = subsolar[0] * d, so = subsolar[1] * d;
      for (let r = 0; r < 180; r++) {
        const lat = (89.5 - r) * d;
        for (let c = 0; c < 360; c++) {
          const lon = (c - 179.5) * d;
          const cosz = Math.sin(lat) * Math.sin(sl) + Math.cos(lat) * Math.cos(sl) * Math.cos(lon - so);
          const a = cosz < 0 ? Math.min(150, 60 + 400 * -cosz) : 0;
          const k = 4 * (r * 360 + c);
          img.data[k] = 0; img.data[k + 1] = 0; img.data[k + 2] = 10; img.data[k + 3] = a;
        }
      }
      nctx.putImageData(img, 0, 0);
    }
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(night, 0, 0, W, H);
  }

  // ---------------------------------------------------------------------------------------------- the frame
  function delayColour(t) {  // 0 (shortest ISL delay now) .. 1 (longest): green to yellow
    const c0 = [53, 183, 121], c1 = [253, 231, 37];
    const m = (k) => Math.round(c0[k] + (c1[k] - c0[k]) * t);
    return `rgb(${m(0)},${m(1)},${m(2)})`;
  }

  function segment(p, q) {  // a line that crosses the antimeridian is drawn on both sides of it
    let [lon1, lat1] = p, [lon2, lat2] = q;
    if (Math.abs(lon2 - lon1) <= 180) { ctx.moveTo(x(lon1), y(lat1)); ctx.lineTo(x(lon2), y(lat2)); return; }
    if (lon2 < lon1) lon2 += 360; else lon2 -= 360;
    ctx.moveTo(x(lon1), y(lat1)); ctx.lineTo(x(lon2), y(lat2));
    const shift = lon2 > lon1 ? -360 : 360;
    ctx.moveTo(x(lon1 + shift), y(lat1)); ctx.lineTo(x(lon2 + shift), y(lat2));
  }

  function draw() {
    const s = L.scene, f = L.frame;
    if (!s || !f) return;
    drawLand();
    drawNight(f.subsolar);
    const links = L.links, n = links.a.length;
    const upDelay = new Float64Array(n).fill(NaN);
    f.up.forEach((k, j) => { if (k < n) upDelay[k] = f.delay_ms[j]; });
    let lo = Infinity, hi = -Infinity;
    for (let k = 0; k < n; k++) if (links.isl[k] && !isNaN(upDelay[k])) { lo = Math.min(lo, upDelay[k]); hi = Math.max(hi, upDelay[k]); }
    const many = s.n_satellites > 400;
    ctx.lineWidth = many ? 0.6 : 1.4;
    // down links first (dashed red), then up ISLs by delay (in 8 colour bins, one path each), then ground links
    ctx.setLineDash([4, 3]); ctx.strokeStyle = "rgba(224,68,62,0.8)"; ctx.beginPath();
    for (let k = 0; k < n; k++) if (isNaN(upDelay[k]) && links.isl[k]) segment(nodePos(links.a[k]), nodePos(links.b[k]));
    ctx.stroke(); ctx.setLineDash([]);
    const bins = 8, byBin = Array.from({ length: bins }, () => []);  // one pass sorts the up ISLs into colours
    for (let k = 0; k < n; k++) {
      if (!links.isl[k] || isNaN(upDelay[k])) continue;
      const t = hi > lo ? (upDelay[k] - lo) / (hi - lo) : 0;
      byBin[Math.min(bins - 1, Math.floor(t * bins))].push(k);
    }
    byBin.forEach((ks, bi) => {
      ctx.strokeStyle = delayColour(bi / (bins - 1)); ctx.globalAlpha = many ? 0.45 : 0.9; ctx.beginPath();
      for (const k of ks) segment(nodePos(links.a[k]), nodePos(links.b[k]));
      ctx.stroke();
    });
    ctx.globalAlpha = 1; ctx.strokeStyle = "#4fc3f7"; ctx.lineWidth = many ? 0.8 : 1.4; ctx.beginPath();
    for (let k = 0; k < n; k++) if (!links.isl[k] && !isNaN(upDelay[k])) segment(nodePos(links.a[k]), nodePos(links.b[k]));
    ctx.stroke();
    if (L.path && L.path.path && L.path.path.length > 1) {
      const idx = L.path.path.map((name) => L.index[name]);
      ctx.strokeStyle = "#ff4dff"; ctx.lineWidth = 3.5; ctx.beginPath();
      for (let k = 1; k < idx.length; k++) segment(nodePos(idx[k - 1]), nodePos(idx[k]));
      ctx.stroke();
    }
    const r = many ? 1.6 : 3.2;
    for (let i = 0; i < s.n_satellites; i++) {
      const lit = f.sunlit[i];
      ctx.fillStyle = lit >= 0.999 ? "#fff3b0" : lit > 0.001 ? "#ff9f43" : "#5a6b8c";
      ctx.fillRect(x(f.lon[i]) - r, y(f.lat[i]) - r, 2 * r, 2 * r);
    }
    ctx.font = "11px system-ui";
    for (let i = s.n_satellites; i < s.nodes.length; i++) {
      const node = s.nodes[i], px = x(node.lon), py = y(node.lat);
      ctx.fillStyle = "#ff6b9a"; ctx.beginPath();
      ctx.moveTo(px, py - 6); ctx.lineTo(px - 5, py + 4); ctx.lineTo(px + 5, py + 4); ctx.fill();
      if (s.nodes.length - s.n_satellites <= 30) { ctx.fillStyle = "#ffd1e0"; ctx.fillText(node.name, px + 7, py + 4); }
    }
    if (L.selected !== null) {
      const p = nodePos(L.selected);
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x(p[0]), y(p[1]), 9, 0, 2 * Math.PI); ctx.stroke();
    }
    L.framesDrawn++;
    const now = performance.now();
    drawTimes.push(now);
    while (drawTimes.length && drawTimes[0] < now - 2000) drawTimes.shift();
    L.fps = drawTimes.length / 2;
    $("fps").textContent = `${L.fps.toFixed(1)} frames/s`;
    $("clock").textContent = `t = ${f.t_s.toFixed(1)} s   ${f.utc}`;
    const isl = links.isl.filter((v) => v).length, up = f.up.length;
    $("counts").textContent = `${s.nodes.length} nodes, ${n} links (${up} up)` +
      (isFinite(lo) ? `, ISL delay ${lo.toFixed(2)}-${hi.toFixed(2)} ms` : "") + `, ${isl} ISLs`;
    if (!s.live) { $("seek").value = f.t_s; $("seek-s").value = f.t_s.toFixed(1); }
  }

  L.linkStates = function () {
    const f = L.frame, s = L.scene, links = L.links, out = [];
    const upDelay = new Map();
    f.up.forEach((k, j) => upDelay.set(k, f.delay_ms[j]));
    for (let k = 0; k < links.a.length; k++) {
      out.push({ name: s.nodes[links.a[k]].name + "~" + s.nodes[links.b[k]].name, up: upDelay.has(k),
                 delay_ms: upDelay.has(k) ? upDelay.get(k) : null, isl: links.isl[k] });
    }
    return out;
  };

  // --------------------------------------------------------------------------------------------- the socket
  L.ask = function (question) {
    const id = nextId++;
    return new Promise((resolve) => { pending.set(id, resolve); ws.send(JSON.stringify({ ...question, id })); });
  };
  L.seek = function (t_s) { return L.ask({ type: "seek", t_s: Number(t_s) }); };

  function onMessage(ev) {
    const m = JSON.parse(ev.data);
    if (m.type === "scene") {
      L.scene = m; L.index = {};
      m.nodes.forEach((nd, i) => { L.index[nd.name] = i; });
      $("scenario").textContent = m.scenario;
      $("mode").textContent = m.live ? "live" : `replay (${m.duration_s.toFixed(1)} s)`;
      $("node-names").innerHTML = m.nodes.map((nd) => `<option value="${nd.name}">`).join("");
      if (!m.live) {
        $("replay").hidden = false; $("seek").max = m.duration_s; $("seek-s").max = m.duration_s;
      }
    } else if (m.type === "links") {
      const links = L.links;
      links.a.length = links.b.length = links.isl.length = m.since;
      links.a.push(...m.a); links.b.push(...m.b); links.isl.push(...m.isl);
    } else if (m.type === "frame") {
      L.frame = m; L.framesReceived++;
      const resolve = m.id !== undefined && pending.get(m.id);
      if (resolve) { pending.delete(m.id); resolve(m); }
      requestAnimationFrame(draw);
    } else if (m.type === "answer") {
      const resolve = pending.get(m.id);
      if (resolve) { pending.delete(m.id); resolve(m); }
    }
  }

  function connect() {
    ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onmessage = onMessage;
    ws.onclose = () => { $("clock").textContent += "   (disconnected: the run has ended)"; };
  }

  // ---------------------------------------------------------------------------------------------- the tools
  canvas.addEventListener("click", (ev) => {
    const s = L.scene, f = L.frame;
    if (!s || !f) return;
    const rect = canvas.getBoundingClientRect();
    const px = (ev.clientX - rect.left) * W / rect.width, py = (ev.clientY - rect.top) * H / rect.height;
    let best = null, bestD = 12 * 12;
    for (let i = 0; i < s.nodes.length; i++) {
      const p = nodePos(i), dx = x(p[0]) - px, dy = y(p[1]) - py, d = dx * dx + dy * dy;
      if (d < bestD) { best = i; bestD = d; }
    }
    if (best !== null) L.selectNode(s.nodes[best].name);
  });

  L.selectNode = async function (name) {
    L.selected = L.index[name];
    const links = L.linkStates().filter((l) => l.name.split("~").includes(name));
    const head = `${name} (${L.scene.nodes[L.selected].kind})\nlinks:\n` + links.map((l) =>
      `  ${l.name}  ${l.up ? "up " + l.delay_ms.toFixed(3) + " ms" : "down"}`).join("\n");
    $("node-out").textContent = head + "\nroutes: asking...";
    draw();
    const a = await L.ask({ type: "node", name, t_s: L.frame.t_s });
    L.nodeInfo = a;
    if (a.error) { $("node-out").textContent = head + "\n" + a.error; return; }
    let text = head + `\nroutes (${a.routes_from}, ${a.routes.length}):\n` +
      a.routes.slice(0, 200).map((r) => `  ${r[0]} via ${r[1]}` + (r[2] === null ? "" : `  ${r[2].toFixed(3)} ms`))
      .join("\n");
    if (a.neighbours !== undefined) text += `\nneighbours (${a.neighbours_command}):\n${a.neighbours}`;
    $("node-out").textContent = text;
  };

  L.showPath = async function (a, b) {
    const answer = await L.ask({ type: "path", a, b, t_s: L.frame ? L.frame.t_s : 0 });
    L.path = answer;
    $("path-out").textContent = answer.error ? answer.error : answer.path.length ?
      `${answer.path.join(" > ")}\nRTT ${answer.rtt_ms.toFixed(3)} ms (${answer.path.length - 1} hops)` : "unreachable";
    draw();
    return answer;
  };
  $("path-go").addEventListener("click", () => L.showPath($("path-a").value, $("path-b").value));

  // ------------------------------------------------------------------------------------------ replay controls
  let playFrom = 0, playWall = 0, busy = false;
  function playLoop() {
    if (!L.playing) return;
    const t = Math.min(L.scene.duration_s, playFrom + L.playSpeed * (performance.now() - playWall) / 1000);
    if (!busy) {
      busy = true;
      L.seek(t).then(() => { busy = false; });
    }
    if (t >= L.scene.duration_s) { L.pause(); return; }
    setTimeout(playLoop, 200);
  }
  L.play = function () {
    playFrom = L.frame ? L.frame.t_s : 0; playWall = performance.now(); L.playing = true;
    $("play").textContent = "pause"; playLoop();
  };
  L.pause = function () { L.playing = false; $("play").textContent = "play"; };
  $("play").addEventListener("click", () => (L.playing ? L.pause() : L.play()));
  $("speed").addEventListener("change", (ev) => {
    L.playSpeed = Number(ev.target.value);
    if (L.playing) { L.pause(); L.play(); }
  });
  const seekTo = (t) => { const was = L.playing; L.pause(); L.seek(t).then(() => { if (was) L.play(); }); };
  $("seek").addEventListener("change", (ev) => seekTo(ev.target.value));
  $("seek-s").addEventListener("change", (ev) => seekTo(ev.target.value));

  fetch("/land.json").then((r) => r.json()).then((j) => { land = j; draw(); });
  connect();
})();
