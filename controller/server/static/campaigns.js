"use strict";
(() => {
  const root = document.getElementById("campaigns"), status = document.getElementById("campaigns-status");
  async function refresh() {
    const groups = await qf.get("/ui/api/campaigns");
    const cards = groups.map(g => {
      const id = `g-${g.group}`;
      const card = qf.el("article", { class: "card", "aria-labelledby": id, "data-group": g.group });
      card.append(qf.el("h2", { id }, qf.el("a", { href: `/campaigns/${encodeURIComponent(g.group)}`, text: g.group })), qf.progress(g));
      return card;
    });
    root.replaceChildren(...cards);
    status.textContent = groups.length ? `${groups.length} campaign(s)` : "No campaign yet: submit one with qforge submit.";
  }
  qf.every(2000, refresh);
})();
