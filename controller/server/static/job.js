"use strict";
(() => {
  const root = document.getElementById("job"), jobId = root.dataset.job;
  let lastStatus = null;
  /* A definition list; a value that is a list of lines becomes a bulleted list. */
  const dl = (host, pairs) => host.replaceChildren(...pairs.flatMap(([k, v]) => [qf.el("dt", { text: k }),
    Array.isArray(v) ? qf.el("dd", { id: `fact-${k.split(" ")[0].toLowerCase()}` }, qf.el("ul", {}, ...v.map(line => qf.el("li", { text: line })))) : qf.el("dd", { text: v })]));
  const say = text => { document.getElementById("action-status").textContent = text; };

  async function refresh() {
    const p = await qf.get(`/ui/api/jobs/${encodeURIComponent(jobId)}`);
    const r = p.view.record, spec = r.spec, pl = r.placement || {};
    document.getElementById("job-crumb").replaceChildren(...p.view.groups.map((g, i) => [i ? ", " : "", qf.el("a", { href: `/campaigns/${encodeURIComponent(g)}`, text: g })]).flat());
    const where = r.status === "RUNNING" ? [pl.executor, pl.node || pl.host, pl.pod || pl.worker_id].filter(Boolean).join(" · ") : (pl.executor ? `ran on ${[pl.executor, pl.node || pl.host].filter(Boolean).join(" · ")}` : "—");
    dl(document.getElementById("state"), [
      ["Name", spec.name || "—"], ["Status", r.status], ["Owner", r.owner],
      ["Method / task", `${spec.method || "gfn2"} / ${spec.task || "opt"}`],
      ["Charge / unpaired electrons", `${spec.charge ?? 0} / ${spec.uhf ?? 0}`],
      ["Attempts", String(r.attempts)],
      ["Where it runs", where],
      ["Why it waits", p.view.waiting.length ? p.view.waiting : (r.status === "QUEUED" ? "—" : "not waiting")],
      ["Folder", p.view.folder]]);
    const ev = [["submitted", r.created_at], ["started", r.started_at], ["finished", r.finished_at], ["last update", r.updated_at]];
    document.getElementById("events").replaceChildren(...ev.filter(e => e[1]).map(([k, v]) => qf.el("li", { text: `${k}: ${v}` })));
    const res = r.result || {}, err = r.error;
    const rows = [];
    if (r.result) rows.push(["Energy", qf.num(res.energy, 8, "Eh")], ["HOMO–LUMO gap", qf.num(res.gap, 4, "eV")],
      ["Dipole", qf.num(res.dipole_debye, 4, "D")], ["Converged", res.converged === undefined ? "—" : String(res.converged)],
      ["Wall time", qf.num(res.wall_time, 2, "s")], ["xtb version", res.xtb_version || "—"]);
    if (err) rows.push(["Error", `${err.type}: ${err.message}`]);
    if (!rows.length) rows.push(["Result", `none yet (${r.status})`]);
    dl(document.getElementById("result"), rows);
    const btn = document.getElementById("cancel-job"); btn.hidden = !p.can_cancel;
    document.getElementById("log-name").textContent = p.log_name ? `(${p.log_name})` : "";
    document.getElementById("log").textContent = p.log_tail || "No output yet.";
    if (lastStatus !== r.status) {
      lastStatus = r.status;
      qfViewer.draw(document.getElementById("mol-input"), p.input);
      const of = document.getElementById("opt-figure"); of.hidden = !p.optimised;
      if (p.optimised) qfViewer.draw(document.getElementById("mol-opt"), p.optimised);
      const xyz = m => `${m.symbols.length}\n\n` + m.symbols.map((s, i) => `${s.padEnd(2)} ${m.geometry[i].map(c => c.toFixed(6).padStart(12)).join(" ")}`).join("\n");
      document.getElementById("xyz").textContent = `# input (Å)\n${xyz(p.input)}` + (p.optimised ? `\n\n# optimised (Å)\n${xyz(p.optimised)}` : "");
    }
    return !["COMPLETED", "FAILED", "CANCELLED"].includes(r.status);  /* final: stop polling */
  }
  document.getElementById("cancel-job").addEventListener("click", async () => {
    try { const r = await qf.post("/api/v1/cancel", { job_ids: [jobId] }); say(`Cancel requested (${r.requested.map(x => x[1]).join(", ") || "already finished"}).`); await refresh(); }
    catch (e) { say(`Cancel refused: ${e.message}`); }
  });
  qf.every(2000, refresh);
})();
