/* qforge's page: helpers every page uses (no framework, no build step). */
"use strict";
const qf = {
  csrf() { const m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ""; },
  async get(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { window.location.assign("/signin"); throw new Error("signed out"); }
    if (!r.ok) { let d = r.statusText; try { d = (await r.json()).detail || d; } catch (e) { /* not json */ } throw new Error(d); }
    return r.json();
  },
  async post(url, body) {
    const r = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": qf.csrf() }, body: JSON.stringify(body) });
    let data = null; try { data = await r.json(); } catch (e) { /* empty */ }
    if (!r.ok) throw new Error((data && data.detail) || r.statusText);
    return data;
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  },
  num(v, digits, unit) { return (v === null || v === undefined) ? "—" : `${Number(v).toFixed(digits)}${unit ? " " + unit : ""}`; },
  duration(s) {
    if (s === null || s === undefined) return "unknown (nothing finished yet)";
    s = Math.round(s); if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? `${h} h ${m % 60} min (${s} s)` : `${m} min ${s % 60} s (${s} s)`;
  },
  STATUSES: ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"],
  /* A progress bar whose numbers are in its label and its text: readable without colour. */
  progress(live) {
    const total = live.total || 0, wrap = qf.el("div", { class: "progress" });
    const pct = total ? Math.round(100 * live.finished / total) : 0;
    const bar = qf.el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(total),
      "aria-valuenow": String(live.finished), "aria-label": `${live.finished} of ${total} jobs finished (${pct} %)` });
    for (const s of ["COMPLETED", "FAILED", "CANCELLED", "RUNNING"]) {
      const n = live.counts[s] || 0; if (!n || !total) continue;
      const seg = qf.el("span", { class: s, title: `${n} ${s}` });
      seg.style.width = `${(100 * n / total).toFixed(3)}%`;  /* CSSOM: allowed by the CSP */
      bar.append(seg);
    }
    const counts = qf.el("ul", { class: "counts" });
    for (const s of qf.STATUSES) counts.append(qf.el("li", { "data-status": s, text: `${s}: ${live.counts[s] || 0}` }));
    wrap.append(bar, qf.el("p", { class: "done-line", text: `${live.finished} of ${total} finished (${pct} %)` }), counts);
    if (live.molecules) wrap.append(qf.el("p", { class: "molecules-line", text: live.molecules }));
    wrap.append(
      qf.el("p", { class: "rate", text: `Rate: ${qf.num(live.rate_per_minute, 1, "jobs/min")} over the last ${qf.num(live.window_minutes * 60, 0, "s")} · Time left: ${qf.duration(live.eta_seconds)}` }));
    return wrap;
  },
  /* Call fn now and every `ms` milliseconds (until it returns false); a failure is
     shown in the page's alert line and tried again. */
  every(ms, fn) {
    let timer = null;
    const alert = document.getElementById("page-error");
    const tick = async () => {
      try {
        const more = await fn();
        if (alert) alert.textContent = "";
        if (more === false) { timer = null; return; }
      } catch (e) {
        if (alert) alert.textContent = `Could not refresh: ${e.message}`;
      }
      timer = setTimeout(tick, ms);
    };
    tick();
    document.addEventListener("visibilitychange", () => { if (!document.hidden && timer) { clearTimeout(timer); tick(); } });
  },
};
window.qf = qf;
