"use strict";
(() => {
  const root = document.getElementById("campaign"), group = root.dataset.group;
  const base = `/ui/api/groups/${encodeURIComponent(group)}`;
  const user = (document.getElementById("who-name") || {}).textContent || "";
  const role = (document.getElementById("who-role") || {}).textContent || "viewer";
  const state = { offset: 0, limit: 50, sort: "created", desc: false, status: "", q: "" };
  let version = null, total = 0;
  const mayCancel = owner => role === "admin" || (role === "submitter" && owner === user);
  const say = text => { document.getElementById("action-status").textContent = text; };

  async function cancel(body, what) {
    try {
      const r = await qf.post("/api/v1/cancel", body);
      say(`Cancel of ${what} requested: ${r.requested.length} job(s)${r.warnings && r.warnings.length ? "; " + r.warnings.join("; ") : ""}.`);
      await refreshLive(true);
    } catch (e) { say(`Cancel refused: ${e.message}`); }
  }

  function row(r) {
    const tr = qf.el("tr", { "data-job": r.job_id, "data-status": r.status });
    const actions = qf.el("td");
    if ((r.status === "QUEUED" || r.status === "RUNNING") && mayCancel(r.owner)) {
      const b = qf.el("button", { type: "button", class: "cancel", "aria-label": `Cancel job ${r.name || r.job_id}`, text: "Cancel" });
      b.addEventListener("click", () => cancel({ job_ids: [r.job_id] }, r.name || r.job_id));
      actions.append(b);
    }
    tr.append(
      qf.el("td", {}, qf.el("a", { href: `/jobs/${encodeURIComponent(r.job_id)}`, text: r.name || r.job_id })),
      qf.el("td", { text: r.formula }),
      qf.el("td", { class: `status status-${r.status}`, text: r.status }),
      qf.el("td", { class: "num energy", text: qf.num(r.energy_eh, 6, "Eh") }),
      qf.el("td", { class: "num gap", text: qf.num(r.gap_ev, 3, "eV") }),
      qf.el("td", { class: "num", text: qf.num(r.dipole_debye, 3, "D") }),
      qf.el("td", { class: "num", text: qf.num(r.wall_time_s, 2, "s") }),
      qf.el("td", { class: "err", text: r.error_type ? `${r.error_type}: ${r.error_message || ""}` : "" }),
      actions);
    return tr;
  }

  async function refreshRows() {
    const p = new URLSearchParams({ offset: state.offset, limit: state.limit, sort: state.sort, desc: state.desc });
    if (state.status) p.set("status", state.status);
    if (state.q) p.set("q", state.q);
    const page = await qf.get(`${base}/rows?${p}`);
    total = page.total;
    document.querySelector("#jobs tbody").replaceChildren(...page.rows.map(row));
    const last = Math.min(page.offset + page.rows.length, page.total);
    document.getElementById("page-info").textContent = page.total ? `Jobs ${page.offset + 1} to ${last} of ${page.total}` : "No job matches.";
    document.getElementById("table-status").textContent = `${page.total} job(s) shown, sorted by ${state.sort} ${state.desc ? "descending" : "ascending"}${state.status ? ", status " + state.status : ""}${state.q ? `, containing “${state.q}”` : ""}.`;
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = last >= page.total;
    for (const th of document.querySelectorAll("#jobs th[data-sort]"))
      th.setAttribute("aria-sort", th.dataset.sort === state.sort ? (state.desc ? "descending" : "ascending") : "none");
  }

  async function refreshSummary() {
    const s = await qf.get(`${base}/summary`);
    const note = s.points.length < s.completed_with_gap ? `Showing an even sample of ${s.points.length} of ${s.completed_with_gap} points.` : null;
    document.getElementById("scatter").dataset.points = String(s.points.length);
    qfPlots.scatter(document.getElementById("scatter"), s.points, note);
    qfPlots.histogram(document.getElementById("histogram"), s.histogram);
    qfPlots.timeline(document.getElementById("timeline"), s.timeline);
    const fails = document.getElementById("failures");
    if (!s.failures.length) { fails.replaceChildren(qf.el("p", { text: "No job failed." })); }
    else fails.replaceChildren(...s.failures.map(f => qf.el("div", { class: "failure", "data-error-type": f.type },
      qf.el("h3", { text: `${f.type}: ${f.count} job(s)` }),
      qf.el("ul", {}, ...f.messages.map(m => qf.el("li", { text: `${m.count} × ${m.message || "(no message)"}` }))),
      qf.el("p", {}, "For example: ", ...f.examples.flatMap((e, i) => [i ? ", " : "", qf.el("a", { href: `/jobs/${encodeURIComponent(e.job_id)}`, text: e.name })])))));
  }

  async function refreshLive(force) {
    const live = await qf.get(`${base}/live`);
    document.getElementById("progress").replaceChildren(qf.progress(live));
    const open = (live.counts.QUEUED || 0) + (live.counts.RUNNING || 0);
    document.getElementById("cancel-group").hidden = !(open && (role === "admin" || role === "submitter"));
    if (force || live.version !== version) { version = live.version; await Promise.all([refreshRows(), refreshSummary()]); }
  }

  document.getElementById("filters").addEventListener("submit", ev => {
    ev.preventDefault(); state.status = document.getElementById("filter-status").value;
    state.q = document.getElementById("filter-text").value.trim(); state.offset = 0; refreshRows();
  });
  for (const th of document.querySelectorAll("#jobs th[data-sort]"))
    th.querySelector("button").addEventListener("click", () => {
      if (state.sort === th.dataset.sort) state.desc = !state.desc; else { state.sort = th.dataset.sort; state.desc = false; }
      state.offset = 0; refreshRows();
    });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); refreshRows(); });
  document.getElementById("next").addEventListener("click", () => { if (state.offset + state.limit < total) { state.offset += state.limit; refreshRows(); } });
  document.getElementById("cancel-group").addEventListener("click", () => {
    if (window.confirm(`Cancel every unfinished job of ${group} that you may cancel?`)) cancel({ group }, `campaign ${group}`);
  });
  qf.every(2000, () => refreshLive(false));
})();
