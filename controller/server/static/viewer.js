/* A small molecule viewer on a canvas (no library): atoms as shaded discs labelled by
   element, bonds from covalent radii, drawn back to front; drag or arrow keys turn it. */
"use strict";
(() => {
  const RADIUS = { H: .31, C: .76, N: .71, O: .66, F: .57, P: 1.07, S: 1.05, Cl: 1.02, Br: 1.2, I: 1.39, B: .84, Si: 1.11 };
  const COLOUR = { H: "#e8e8e8", C: "#555", N: "#3050f8", O: "#ff0d0d", F: "#90e050", S: "#c8a000", P: "#ff8000", Cl: "#1ff01f", Br: "#a62929", I: "#940094" };
  const state = new WeakMap();
  function rotate(p, ax, ay) {
    const [x, y, z] = p, cy = Math.cos(ay), sy = Math.sin(ay), cx = Math.cos(ax), sx = Math.sin(ax);
    const x1 = x * cy + z * sy, z1 = -x * sy + z * cy;
    return [x1, y * cx - z1 * sx, y * sx + z1 * cx];
  }
  function render(canvas) {
    const s = state.get(canvas), ctx = canvas.getContext("2d"), mol = s.mol, n = mol.symbols.length;
    const c = [0, 1, 2].map(k => mol.geometry.reduce((a, p) => a + p[k], 0) / n);
    const pts = mol.geometry.map(p => rotate([p[0] - c[0], p[1] - c[1], p[2] - c[2]], s.ax, s.ay));
    const ext = Math.max(1, ...pts.map(p => Math.hypot(p[0], p[1]))) + 1;
    const scale = Math.min(canvas.width, canvas.height) / (2 * ext), W = canvas.width / 2, H = canvas.height / 2;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const bonds = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
      const a = mol.geometry[i], b = mol.geometry[j], d = Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
      if (d < 1.2 * ((RADIUS[mol.symbols[i]] || 1.5) + (RADIUS[mol.symbols[j]] || 1.5))) bonds.push([i, j]);
    }
    ctx.strokeStyle = "#333"; ctx.lineWidth = 3;
    for (const [i, j] of bonds) { ctx.beginPath(); ctx.moveTo(W + pts[i][0] * scale, H - pts[i][1] * scale); ctx.lineTo(W + pts[j][0] * scale, H - pts[j][1] * scale); ctx.stroke(); }
    const order = [...pts.keys()].sort((i, j) => pts[i][2] - pts[j][2]);
    ctx.font = "bold 12px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (const i of order) {
      const sym = mol.symbols[i], r = (0.35 + 0.4 * (RADIUS[sym] || 1)) * scale * 0.6, x = W + pts[i][0] * scale, y = H - pts[i][1] * scale;
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fillStyle = COLOUR[sym] || "#d070d0"; ctx.fill(); ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke();
      ctx.fillStyle = ["H", "F", "Cl", "S"].includes(sym) ? "#000" : "#fff"; ctx.fillText(sym, x, y);
    }
  }
  function draw(canvas, mol) {
    const first = !state.has(canvas);
    state.set(canvas, { mol, ax: 0.4, ay: 0.6, ...(state.get(canvas) || {}), mol });
    canvas.setAttribute("aria-label", `${canvas.getAttribute("aria-label").split(":")[0]}: ${mol.symbols.length} atoms (${[...new Set(mol.symbols)].join(", ")})`);
    if (first) {
      let drag = null;
      canvas.addEventListener("pointerdown", e => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
      canvas.addEventListener("pointerup", () => { drag = null; });
      canvas.addEventListener("pointermove", e => {
        if (!drag) return; const s = state.get(canvas);
        s.ay += (e.clientX - drag[0]) / 100; s.ax += (e.clientY - drag[1]) / 100; drag = [e.clientX, e.clientY]; render(canvas);
      });
      canvas.addEventListener("keydown", e => {
        const s = state.get(canvas), d = { ArrowLeft: [0, -.2], ArrowRight: [0, .2], ArrowUp: [-.2, 0], ArrowDown: [.2, 0] }[e.key];
        if (!d) return; e.preventDefault(); s.ax += d[0]; s.ay += d[1]; render(canvas);
      });
    }
    render(canvas);
  }
  window.qfViewer = { draw };
})();
