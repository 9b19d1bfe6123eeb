/* spectraldl: a small canvas line plot with axes, zoom (wheel) and pan (drag).
 *
 * No dependencies. One Plot per <canvas>. setData() draws series of (x, y)
 * arrays; the wheel zooms the x axis around the cursor (shift + wheel zooms
 * the y axis), dragging pans, a double click resets. Unless the y axis was
 * zoomed by hand, it follows the data visible in the x range.
 */
"use strict";

(function (global) {
  function niceStep(range, target) {
    const raw = range / Math.max(target, 1);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10;
    return nice * power;
  }

  function ticks(lo, hi, target) {
    if (!(hi > lo)) return [lo];
    const step = niceStep(hi - lo, target);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function fmt(v, step) {
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    return Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : v.toFixed(Math.min(digits, 6));
  }

  class Plot {
    constructor(canvas, options) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.options = Object.assign({ xlabel: "", ylabel: "" }, options || {});
      this.series = [];
      this.markers = [];
      this.message = "";
      this.bounds = null;
      this.view = null;
      this.yManual = false;
      this.drag = null;
      this.pad = { left: 58, right: 12, top: 10, bottom: 36 };
      canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
      canvas.addEventListener("pointerdown", (e) => this.onDown(e));
      canvas.addEventListener("pointermove", (e) => this.onMove(e));
      canvas.addEventListener("pointerup", (e) => this.onUp(e));
      canvas.addEventListener("pointercancel", (e) => this.onUp(e));
      canvas.addEventListener("dblclick", () => this.reset());
      if (global.ResizeObserver) {
        new ResizeObserver(() => this.draw()).observe(canvas);
      }
    }

    /* series: [{x: [...], y: [...], color, width}], options: {markers: [{x, label}], message, xrange} */
    setData(series, options) {
      const opts = options || {};
      this.series = (series || []).filter((s) => s && s.x && s.x.length);
      this.markers = opts.markers || [];
      this.message = opts.message || "";
      let x0 = Infinity, x1 = -Infinity;
      for (const s of this.series) {
        for (let i = 0; i < s.x.length; i++) {
          if (s.y[i] === null || !isFinite(s.y[i])) continue;
          if (s.x[i] < x0) x0 = s.x[i];
          if (s.x[i] > x1) x1 = s.x[i];
        }
      }
      if (opts.xrange) { x0 = Math.max(x0, opts.xrange[0]); x1 = Math.min(x1, opts.xrange[1]); }
      this.bounds = isFinite(x0) && x1 > x0 ? { x0, x1 } : null;
      this.reset();
    }

    reset() {
      this.yManual = false;
      this.view = this.bounds ? { x0: this.bounds.x0, x1: this.bounds.x1, y0: 0, y1: 1 } : null;
      this.autoY();
      this.draw();
    }

    autoY() {
      if (!this.view || this.yManual) return;
      let y0 = Infinity, y1 = -Infinity;
      for (const s of this.series) {
        for (let i = 0; i < s.x.length; i++) {
          const x = s.x[i], y = s.y[i];
          if (x < this.view.x0 || x > this.view.x1 || y === null || !isFinite(y)) continue;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
      if (!isFinite(y0)) { y0 = 0; y1 = 1; }
      if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
      const margin = (y1 - y0) * 0.06;
      this.view.y0 = y0 - margin;
      this.view.y1 = y1 + margin;
    }

    area() {
      const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
      return { x: this.pad.left, y: this.pad.top, w: Math.max(10, w - this.pad.left - this.pad.right), h: Math.max(10, h - this.pad.top - this.pad.bottom) };
    }

    toData(px, py) {
      const a = this.area(), v = this.view;
      return { x: v.x0 + ((px - a.x) / a.w) * (v.x1 - v.x0), y: v.y1 - ((py - a.y) / a.h) * (v.y1 - v.y0) };
    }

    onWheel(e) {
      if (!this.view) return;
      e.preventDefault();
      const rect = this.canvas.getBoundingClientRect();
      const p = this.toData(e.clientX - rect.left, e.clientY - rect.top);
      const factor = Math.exp(Math.sign(e.deltaY) * 0.15);
      const v = this.view;
      if (e.shiftKey) {
        this.yManual = true;
        v.y0 = p.y - (p.y - v.y0) * factor;
        v.y1 = p.y + (v.y1 - p.y) * factor;
      } else {
        const span = (v.x1 - v.x0) * factor;
        const full = this.bounds.x1 - this.bounds.x0;
        if (span >= full) { v.x0 = this.bounds.x0; v.x1 = this.bounds.x1; }
        else {
          const t = (p.x - v.x0) / (v.x1 - v.x0);
          v.x0 = p.x - t * span;
          v.x1 = v.x0 + span;
        }
        this.autoY();
      }
      this.draw();
    }

    onDown(e) {
      if (!this.view || e.button !== 0) return;
      this.canvas.setPointerCapture(e.pointerId);
      this.drag = { px: e.clientX, py: e.clientY, view: Object.assign({}, this.view) };
    }

    onMove(e) {
      if (!this.drag) return;
      const a = this.area(), d = this.drag.view;
      const dx = ((e.clientX - this.drag.px) / a.w) * (d.x1 - d.x0);
      this.view.x0 = d.x0 - dx;
      this.view.x1 = d.x1 - dx;
      if (this.yManual) {
        const dy = ((e.clientY - this.drag.py) / a.h) * (d.y1 - d.y0);
        this.view.y0 = d.y0 + dy;
        this.view.y1 = d.y1 + dy;
      } else {
        this.autoY();
      }
      this.draw();
    }

    onUp() { this.drag = null; }

    draw() {
      const canvas = this.canvas, ctx = this.ctx;
      const ratio = global.devicePixelRatio || 1;
      const w = canvas.clientWidth, h = canvas.clientHeight;
      if (!w || !h) return;
      if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
        canvas.width = Math.round(w * ratio);
        canvas.height = Math.round(h * ratio);
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, w, h);
      ctx.font = "12px system-ui, sans-serif";
      const a = this.area();
      ctx.strokeStyle = "#c9d0d8";
      ctx.lineWidth = 1;
      ctx.strokeRect(a.x + 0.5, a.y + 0.5, a.w, a.h);
      if (!this.view) {
        ctx.fillStyle = "#5d6b79";
        ctx.textAlign = "center";
        ctx.fillText(this.message || "no data", a.x + a.w / 2, a.y + a.h / 2);
        return;
      }
      const v = this.view;
      const sx = (x) => a.x + ((x - v.x0) / (v.x1 - v.x0)) * a.w;
      const sy = (y) => a.y + ((v.y1 - y) / (v.y1 - v.y0)) * a.h;
      ctx.fillStyle = "#5d6b79";
      ctx.strokeStyle = "#eef1f4";
      const xt = ticks(v.x0, v.x1, Math.max(2, a.w / 90));
      const xstep = xt.length > 1 ? xt[1] - xt[0] : 1;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (const t of xt) {
        const px = Math.round(sx(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(px, a.y + 1); ctx.lineTo(px, a.y + a.h); ctx.stroke();
        ctx.fillText(fmt(t, xstep), px, a.y + a.h + 4);
      }
      const yt = ticks(v.y0, v.y1, Math.max(2, a.h / 45));
      const ystep = yt.length > 1 ? yt[1] - yt[0] : 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const t of yt) {
        const py = Math.round(sy(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(a.x + 1, py); ctx.lineTo(a.x + a.w, py); ctx.stroke();
        ctx.fillText(fmt(t, ystep), a.x - 5, py);
      }
      if (this.options.xlabel) {
        ctx.textAlign = "center"; ctx.textBaseline = "bottom";
        ctx.fillText(this.options.xlabel, a.x + a.w / 2, h - 1);
      }
      ctx.save();
      ctx.beginPath(); ctx.rect(a.x, a.y, a.w, a.h); ctx.clip();
      for (const m of this.markers) {
        if (m.x < v.x0 || m.x > v.x1) continue;
        const px = Math.round(sx(m.x)) + 0.5;
        const colour = m.color || "#c2410c";
        ctx.strokeStyle = colour; ctx.setLineDash([4, 4]);
        ctx.beginPath(); ctx.moveTo(px, a.y); ctx.lineTo(px, a.y + a.h); ctx.stroke();
        ctx.setLineDash([]);
        if (m.label) { ctx.fillStyle = colour; ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.fillText(m.label, px + 3, a.y + 3 + (m.row || 0) * 12); }
      }
      for (const s of this.series) {
        ctx.strokeStyle = s.color || "#1d232a";
        ctx.lineWidth = s.width || 1;
        ctx.beginPath();
        let pen = false;
        for (let i = 0; i < s.x.length; i++) {
          const y = s.y[i];
          if (y === null || !isFinite(y)) { pen = false; continue; }
          const px = sx(s.x[i]), py = sy(y);
          if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
        }
        ctx.stroke();
        if (s.points) {
          ctx.fillStyle = s.color || "#1d232a";
          for (let i = 0; i < s.x.length; i++) {
            if (s.y[i] === null) continue;
            ctx.fillRect(sx(s.x[i]) - 1.5, sy(s.y[i]) - 1.5, 3, 3);
          }
        }
      }
      ctx.restore();
      if (this.message) {
        ctx.fillStyle = "#5d6b79"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText(this.message, a.x + a.w / 2, a.y + 14);
      }
    }
  }

  global.SDLPlot = Plot;
})(window);
