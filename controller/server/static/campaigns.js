"use strict";
(() => {
  const root = document.getElementById("campaigns"), status = document.getElementById("campaigns-status");
  async function refresh() {
    const data = await qf.get("/ui/api/campaigns"), groups = data.campaigns;
    const cards = groups.map(g => {
      const id = `g-${g.group}`;
      const card = qf.el("article", { class: "card", "aria-labelledby": id, "data-group": g.group });
      card.append(qf.el("h2", { id }, qf.el("a", { href: `/campaigns/${encodeURIComponent(g.group)}`, text: g.group })), qf.progress(g));
      return card;
    });
    if (data.others.length) {
      const list = qf.el("ul", { class: "others" }, ...data.others.map(g => qf.el("li", {}, qf.el("a", { href: `/campaigns/${encodeURIComponent(g)}`, text: g }))));
      cards.push(qf.el("section", { "aria-labelledby": "others-h" }, qf.el("h2", { id: "others-h", text: `${data.others.length} older campaign(s)` }), list));
    }
    root.replaceChildren(...cards);
    status.textContent = groups.length ? `${groups.length} campaign(s)` : "No campaign yet: submit one with qforge submit.";
  }
  qf.every(2000, refresh);
})();
