/* Plots drawn as plain SVG (no library): a scatter, a histogram, cumulative lines. */
"use strict";
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 300, M = { l: 64, r: 12, t: 10, b: 44 };
  function svg(tag, attrs) { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); return e; }
  function ticks(lo, hi, n) {
    if (lo === hi) { lo -= 1; hi += 1; }
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n))), err = (hi - lo) / n / step;
    const s = step * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1), out = [];
    for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-12; v += s) out.push(+v.toPrecision(12));
    return { lo, hi, values: out, step: s };
  }
  function frame(label, xlab, ylab, x, y, fmtX, fmtY) {
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    const g = svg("g");
    for (const v of x.values) {
      const px = sx(x, v); g.append(svg("line", { class: "grid", x1: px, x2: px, y1: M.t, y2: H - M.b }));
      const t = svg("text", { x: px, y: H - M.b + 14, "text-anchor": "middle" }); t.textContent = fmtX(v); g.append(t);
    }
    for (const v of y.values) {
      const py = sy(y, v); g.append(svg("line", { class: "grid", x1: M.l, x2: W - M.r, y1: py, y2: py }));
      const t = svg("text", { x: M.l - 4, y: py + 4, "text-anchor": "end" }); t.textContent = fmtY(v); g.append(t);
    }
    g.append(svg("line", { class: "axis", x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
    g.append(svg("line", { class: "axis", x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
    const xl = svg("text", { x: (M.l + W - M.r) / 2, y: H - 6, "text-anchor": "middle" }); xl.textContent = xlab;
    const yl = svg("text", { x: 12, y: (M.t + H - M.b) / 2, transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})`, "text-anchor": "middle" }); yl.textContent = ylab;
    g.append(xl, yl); root.append(g); return root;
  }
  function sx(a, v) { return M.l + (v - a.lo) / (a.hi - a.lo) * (W - M.l - M.r); }
  function sy(a, v) { return H - M.b - (v - a.lo) / (a.hi - a.lo) * (H - M.t - M.b); }
  function pad(lo, hi) { const d = (hi - lo) || Math.abs(hi) * 0.01 || 1; return [lo - d * 0.05, hi + d * 0.05]; }
  function tip(host) { let t = host.nextElementSibling; if (!t || !t.classList.contains("tip")) { t = document.createElement("p"); t.className = "tip"; t.setAttribute("aria-live", "polite"); host.after(t); } return t; }
  function open(jobId) { window.location.assign(`/jobs/${encodeURIComponent(jobId)}`); }

  function scatter(host, points, note) {
    const t = tip(host);
    if (!points.length) { host.replaceChildren(document.createTextNode("No completed job with a gap yet.")); t.textContent = ""; return; }
    const [elo, ehi] = pad(Math.min(...points.map(p => p[0])), Math.max(...points.map(p => p[0])));
    const [glo, ghi] = pad(Math.min(...points.map(p => p[1])), Math.max(...points.map(p => p[1])));
    const x = ticks(elo, ehi, 5), y = ticks(glo, ghi, 5);
    x.lo = elo; x.hi = ehi; y.lo = glo; y.hi = ghi;
    const root = frame(`Scatter of ${points.length} completed jobs: gap in eV against energy in Eh`, "energy (Eh)", "gap (eV)", x, y,
      v => v.toFixed(Math.max(0, -Math.floor(Math.log10(x.step)))), v => v.toFixed(Math.max(0, -Math.floor(Math.log10(y.step)))));
    const g = svg("g", { class: "points" });
    for (const [e, gap, name, id] of points) {
      const c = svg("circle", { class: "pt", cx: sx(x, e).toFixed(2), cy: sy(y, gap).toFixed(2), r: 4, "data-job": id });
      const title = svg("title"); title.textContent = `${name}: ${e.toFixed(6)} Eh, gap ${gap.toFixed(3)} eV`; c.append(title);
      c.addEventListener("mouseenter", () => { t.textContent = `${name} (${id}): energy ${e.toFixed(6)} Eh, gap ${gap.toFixed(3)} eV. Click to open.`; });
      c.addEventListener("click", () => open(id));
      g.append(c);
    }
    root.append(g); host.replaceChildren(root); t.textContent = note || "Hover a point to name its molecule; click to open it.";
  }

  function histogram(host, hist) {
    const t = tip(host), bins = hist.bins || [];
    if (!bins.length) { host.replaceChildren(document.createTextNode("No completed job yet.")); t.textContent = ""; return; }
    const maxC = Math.max(...bins.map(b => b.count));
    const x = ticks(hist.lo, hist.hi, 5), y = ticks(0, maxC, 4);
    y.values = y.values.filter(Number.isInteger);
    x.lo = hist.lo === hist.hi ? hist.lo - 1e-3 : hist.lo; x.hi = hist.lo === hist.hi ? hist.hi + 1e-3 : hist.hi; y.lo = 0; y.hi = Math.max(1, maxC);
    const root = frame(`Histogram of the energies (Eh) of completed jobs, ${bins.length} bins`, "energy (Eh)", "jobs", x, y,
      v => v.toFixed(Math.max(0, -Math.floor(Math.log10(x.step)))), v => String(Math.round(v)));
    const g = svg("g");
    for (const b of bins) {
      if (!b.count) continue;
      const x0 = sx(x, b.lo), x1 = sx(x, b.hi), y0 = sy(y, b.count);
      const r = svg("rect", { class: "binr", x: x0.toFixed(2), width: Math.max(1, x1 - x0 - 1).toFixed(2), y: y0.toFixed(2), height: (H - M.b - y0).toFixed(2), "data-job": b.first });
      const label = `${b.count} job(s) from ${b.lo.toFixed(5)} to ${b.hi.toFixed(5)} Eh: ${b.names.join(", ")}${b.count > b.names.length ? ", …" : ""}`;
      const title = svg("title"); title.textContent = label; r.append(title);
      r.addEventListener("mouseenter", () => { t.textContent = `${label}. Click to open ${b.names[0]}.`; });
      r.addEventListener("click", () => open(b.first));
      g.append(r);
    }
    root.append(g); host.replaceChildren(root); t.textContent = "Hover a bar to name its molecules; click to open the first.";
  }

  function timeline(host, tl) {
    const secs = tl.seconds || [];
    if (!secs.length) { host.replaceChildren(document.createTextNode("Nothing finished yet.")); return; }
    const series = tl.series, maxV = Math.max(1, ...Object.values(series).map(v => v[v.length - 1]));
    const x = ticks(0, secs[secs.length - 1] || 1, 5), y = ticks(0, maxV, 4);
    y.values = y.values.filter(Number.isInteger);
    x.lo = 0; x.hi = secs[secs.length - 1] || 1; y.lo = 0; y.hi = maxV;
    const root = frame("Cumulative jobs finished, by status, against seconds since the first submission", "time (s)", "jobs finished", x, y,
      v => v.toFixed(Math.max(0, -Math.floor(Math.log10(x.step)))), v => String(Math.round(v)));
    const legend = [];
    for (const [st, values] of Object.entries(series)) {
      if (!values[values.length - 1]) continue;
      const d = values.map((v, i) => `${i ? "L" : "M"}${sx(x, secs[i]).toFixed(1)},${sy(y, v).toFixed(1)}`).join("");
      root.append(svg("path", { class: `line-${st}`, d }));
      legend.push(`${st}: ${values[values.length - 1]}`);
    }
    const lg = svg("text", { x: M.l + 6, y: M.t + 12 }); lg.textContent = legend.join(" · "); root.append(lg);
    host.replaceChildren(root);
  }
  window.qfPlots = { scatter, histogram, timeline };
})();
