// Canvas plots of a query: a mel spectrogram (uint8 image from the API) and the beat spectrum.
"use strict";

const Plots = (() => {
  // Viridis, sampled at 9 stops and interpolated into a 256-entry table.
  const STOPS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  const LUT = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (STOPS.length - 1), j = Math.min(Math.floor(x), STOPS.length - 2), f = x - j;
    for (let c = 0; c < 3; c++) LUT[i * 3 + c] = STOPS[j][c] * (1 - f) + STOPS[j + 1][c] * f;
  }

  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 160;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const style = getComputedStyle(document.body);
    return { ctx, w, h, fg: style.color, muted: style.getPropertyValue("--muted").trim() || "#888",
             line: style.getPropertyValue("--line").trim() || "#ccc" };
  }

  function niceStep(span, target) {
    const raw = span / Math.max(target, 1), mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  function fmtSeconds(s, step) {
    return (step < 1 ? s.toFixed(step < 0.1 ? 2 : 1) : String(Math.round(s))) + " s";
  }

  // Slaney's mel scale, as librosa's default filter bank uses.
  function hzToMel(f) {
    const fSp = 200 / 3, minLogHz = 1000, minLogMel = minLogHz / fSp, logStep = Math.log(6.4) / 27;
    return f < minLogHz ? f / fSp : minLogMel + Math.log(f / minLogHz) / logStep;
  }

  function spectrogram(canvas, spec) {
    const { ctx, w, h, muted, line } = setup(canvas);
    const left = 44, bottom = 20, top = 6, right = 8;
    const pw = w - left - right, ph = h - top - bottom;
    const bytes = Uint8Array.from(atob(spec.data), (c) => c.charCodeAt(0));
    const rows = spec.n_mels, cols = spec.n_columns;
    const img = new ImageData(cols, rows);
    for (let r = 0; r < rows; r++) {
      const src = (rows - 1 - r) * cols; // low bands at the bottom
      for (let c = 0; c < cols; c++) {
        const v = bytes[src + c], o = (r * cols + c) * 4;
        img.data[o] = LUT[v * 3]; img.data[o + 1] = LUT[v * 3 + 1]; img.data[o + 2] = LUT[v * 3 + 2]; img.data[o + 3] = 255;
      }
    }
    const off = document.createElement("canvas");
    off.width = cols; off.height = rows;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(off, left, top, pw, ph);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = muted; ctx.strokeStyle = line;
    const dur = spec.duration_s, step = niceStep(dur, Math.max(2, Math.floor(pw / 70)));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let t = 0; t <= dur + 1e-9; t += step) {
      const x = left + (t / dur) * pw;
      ctx.fillText(fmtSeconds(t, step), Math.min(Math.max(x, left + 10), w - 14), top + ph + 4);
    }
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const melMax = hzToMel(spec.fmax_hz);
    for (const f of [250, 1000, 4000, 8000]) {
      if (f >= spec.fmax_hz) continue;
      const y = top + ph - (hzToMel(f) / melMax) * ph;
      ctx.fillText(f >= 1000 ? f / 1000 + " kHz" : f + " Hz", left - 5, y);
    }
  }

  function beatSpectrum(canvas, beat) {
    const { ctx, w, h, fg, muted, line } = setup(canvas);
    const left = 44, bottom = 20, top = 10, right = 8;
    const pw = w - left - right, ph = h - top - bottom;
    const v = beat.values, n = v.length, maxLag = (n - 1) * beat.lag_step_s;
    // Lag 0 is 1 by definition: scale to the rest so the periodicities are visible.
    let lo = Infinity, hi = -Infinity;
    for (let i = 1; i < n; i++) { lo = Math.min(lo, v[i]); hi = Math.max(hi, v[i]); }
    if (!(hi > lo)) { hi = lo + 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const x = (lag) => left + (lag / maxLag) * pw;
    const y = (val) => top + ph - ((Math.min(Math.max(val, lo), hi) - lo) / (hi - lo)) * ph;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = line; ctx.lineWidth = 1; ctx.fillStyle = muted;
    const step = niceStep(maxLag, Math.max(2, Math.floor(pw / 70)));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let t = 0; t <= maxLag + 1e-9; t += step) {
      ctx.beginPath(); ctx.moveTo(x(t), top); ctx.lineTo(x(t), top + ph); ctx.stroke();
      ctx.fillText(fmtSeconds(t, step), Math.min(Math.max(x(t), left + 10), w - 14), top + ph + 4);
    }
    ctx.save();
    ctx.translate(12, top + ph / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText("similarity", 0, 0);
    ctx.restore();
    if (beat.peak_lag_s != null) {
      ctx.setLineDash([4, 4]); ctx.strokeStyle = muted;
      ctx.beginPath(); ctx.moveTo(x(beat.peak_lag_s), top); ctx.lineTo(x(beat.peak_lag_s), top + ph); ctx.stroke();
      ctx.setLineDash([]);
      ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.fillStyle = fg;
      const label = (beat.tempo_bpm ? "≈ " + Math.round(beat.tempo_bpm) + " BPM · " : "") + "period "
        + beat.peak_lag_s.toFixed(2) + " s";
      const lx = Math.min(x(beat.peak_lag_s) + 5, w - right - ctx.measureText(label).width);
      ctx.fillText(label, lx, top);
    }
    ctx.strokeStyle = getComputedStyle(document.body).getPropertyValue("--accent").trim() || "#3b5bdb";
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    for (let i = 1; i < n; i++) {
      const px = x(i * beat.lag_step_s), py = y(v[i]);
      if (i === 1) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }
    ctx.stroke();
  }

  return { spectrogram, beatSpectrum };
})();
